"""The runs package's face: the names callers use, and nothing heavy on import."""

from __future__ import annotations

import subprocess
import sys

from flywheel import runs

MODULES = ("package", "steplog", "local", "inprocess", "cluster")


def test_the_names_callers_use_are_there_from_the_module_that_owns_them() -> None:
    homes = {name: getattr(getattr(runs, name), "__module__", None) for name in runs.__all__}
    assert homes["run_local"] == "flywheel.runs.local"
    assert homes["run_in_process"] == "flywheel.runs.inprocess"
    assert homes["submit"] == homes["ended_runs"] == "flywheel.runs.cluster"
    assert homes["compile_package"] == homes["new_run_id"] == "flywheel.runs.package"
    assert all(home in (None, *(f"flywheel.runs.{m}" for m in MODULES)) for home in homes.values())


def test_importing_runs_loads_neither_kfp_nor_the_steps() -> None:
    # (the CLI imports it for every `flywheel run`; kfp and the steps load when a run starts)
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, flywheel.runs; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'kfp'" not in loaded and "'flywheel.tasks'" not in loaded
