"""`python -m flywheel.cli`, as the `flywheel` script."""

from flywheel.cli import main

main()
