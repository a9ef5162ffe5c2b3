"""The scikit-learn name probe behind the baseline's estimator."""

from __future__ import annotations


def test_the_baseline_check_reads_scikit_learn_without_importing_it() -> None:
    import subprocess
    import sys

    # given a fresh interpreter, when a configuration with a baseline loads,
    # then scikit-learn was never imported (it costs seconds in every step)
    code = (
        "import sys; from flywheel.config import load_settings; "
        "load_settings(None, env={}, overrides=['promotion.baseline={}']); "
        "print('sklearn' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
