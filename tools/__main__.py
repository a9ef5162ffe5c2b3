import sys

from tools.build import main

sys.exit(main(sys.argv[1:]))
