"""The local driver's parts that need no serving virtualenv: logs, the interpreter, the gateway.

Serving real versions needs seldon-core from .venv-serving; that is
tests/integration/test_rollout_local.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from flywheel import synthetic
from flywheel.config import Settings
from flywheel.rollout import local
from flywheel.rollout.analysis import Window
from flywheel.rollout.local import DeployRefused, LocalDriver, _last_error, serving_python
from flywheel.stores import Stores

# What seldon-core-microservice logs when the model class cannot load its version.
FAILED_LOAD = """\
2026-01-14 12:00:00,001 - seldon_core.microservice:main:578 - INFO:  Starting microservice.py:main
2026-01-14 12:00:00,002 - seldon_core.microservice:main:579 - INFO:  Seldon Core version: 1.17.1
Traceback (most recent call last):
  File "/work/.venv-serving/lib/python3.11/site-packages/flywheel/serving/model.py", line 91, in load
    raw = registry.read(self.model_version, MODEL_FILE)
flywheel.registry.VersionNotFound: 'loan-default has no version v9'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/work/.venv-serving/bin/seldon-core-microservice", line 8, in <module>
    sys.exit(main())
flywheel.serving.model.ModelUnavailable: cannot serve loan-default v9 from /tmp/store: 'loan-default has no version v9'
"""


def _log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model-v9.log"
    path.write_text(text)
    return path


def test_a_model_that_cannot_load_is_reported_by_its_message(tmp_path: Path) -> None:
    # given the log of a microservice whose model could not load its version
    # when the reason is read, then it is ModelUnavailable's message, which names the cause
    assert _last_error(_log(tmp_path, FAILED_LOAD)) == (
        "cannot serve loan-default v9 from /tmp/store: 'loan-default has no version v9'"
    )


def test_ours_wins_over_the_noise_a_server_logs_while_stopping(tmp_path: Path) -> None:
    # given gunicorn's own error while shutting down, logged after ModelUnavailable
    noisy = FAILED_LOAD + "AssertionError: can only join a child process\n"
    # then the reason is still the model's
    assert _last_error(_log(tmp_path, noisy)).startswith("cannot serve loan-default v9")


def test_otherwise_the_first_exception_is_the_reason(tmp_path: Path) -> None:
    # given a log without ModelUnavailable, whose first exception is the real failure
    text = FAILED_LOAD.split("The above exception")[0] + "AssertionError: shutting down\n"
    # then it is the reason, with its class name but not its module path
    assert _last_error(_log(tmp_path, text)) == (
        "VersionNotFound: 'loan-default has no version v9'"
    )
    # and an interpreter that cannot import Flywheel at all says so
    broken = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'flywheel'\n"
    assert _last_error(_log(tmp_path, broken)) == "ModuleNotFoundError: No module named 'flywheel'"


def test_without_an_exception_the_last_line_is_the_reason(tmp_path: Path) -> None:
    text = "starting\nKilled\n\n"
    assert _last_error(_log(tmp_path, text)) == "Killed"
    assert _last_error(_log(tmp_path, "")) == "no output"
    assert _last_error(_log(tmp_path, "x" * 2000)) == "x" * 500


@pytest.fixture
def no_serving_python(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No FLYWHEEL_SERVING_PYTHON, cwd an empty directory, and the module in a bare checkout.

    serving_python() also looks next to the source tree it was imported from, and
    this checkout has a .venv-serving; pointing the module's __file__ at a bare copy
    of the tree is what makes "nothing anywhere" reproducible.
    """
    monkeypatch.delenv("FLYWHEEL_SERVING_PYTHON", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    checkout = tmp_path / "checkout"
    module = checkout / "src" / "flywheel" / "rollout" / "local.py"
    module.parent.mkdir(parents=True)
    monkeypatch.setattr(local, "__file__", str(module))
    return checkout


def _venv(base: Path) -> Path:
    python = base / ".venv-serving" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    return python


def test_no_serving_virtualenv_anywhere_names_make_setup(no_serving_python: Path) -> None:
    with pytest.raises(DeployRefused, match=r"no serving virtualenv: run `make setup`"):
        serving_python()


def test_the_source_trees_virtualenv_is_found_from_any_directory(no_serving_python: Path) -> None:
    python = _venv(no_serving_python)
    assert serving_python() == python


def test_the_working_directorys_virtualenv_comes_first(no_serving_python: Path) -> None:
    _venv(no_serving_python)
    python = _venv(Path.cwd())
    assert serving_python() == python


def test_the_environment_variable_wins(
    no_serving_python: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _venv(Path.cwd())
    chosen = tmp_path / "elsewhere" / "python"
    chosen.parent.mkdir()
    chosen.write_text("#!/bin/sh\n")
    monkeypatch.setenv("FLYWHEEL_SERVING_PYTHON", str(chosen))
    assert serving_python() == chosen


def test_an_environment_variable_naming_nothing_is_refused(
    no_serving_python: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLYWHEEL_SERVING_PYTHON", str(tmp_path / "absent" / "python"))
    with pytest.raises(DeployRefused, match=r"FLYWHEEL_SERVING_PYTHON is .*absent/python"):
        serving_python()


def test_the_newest_batch_is_the_traffic_to_replay(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]]
) -> None:
    settings = small_settings()
    make_batches(settings, 3)
    newest = local.newest_batch(Stores(settings).source)
    gen = settings.data.generator
    expected = synthetic.generate_day(list(synthetic.days(gen.start_date, 3))[-1], gen)
    pd.testing.assert_frame_equal(newest, expected, check_dtype=False)


def test_the_driver_runs_the_gateway_and_stops_it(
    small_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # given a driver for a serving directory
    driver = LocalDriver(small_settings(), workdir=tmp_path / "serve")
    try:
        # when the gateway is started (no model is served yet)
        driver.ensure_gateway()
        gateway = driver.gateway
        assert gateway is not None and gateway.poll() is None
        # then it measures empty windows, and starting it again reuses it
        assert driver.measure(0) == (Window(), Window())
        driver.ensure_gateway()
        assert driver.gateway is gateway
        assert (tmp_path / "serve" / "gateway.log").is_file()
    finally:
        driver.close()
    # and closing stops its process and forgets it
    assert gateway.poll() is not None and driver.gateway is None
    assert not (tmp_path / "serve" / "processes.json").exists()


def test_a_gateway_whose_leader_died_is_replaced_and_its_orphans_stopped(
    small_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # given a driver whose gateway group lost its leader but not its child
    driver = LocalDriver(small_settings(), workdir=tmp_path / "serve")
    try:
        dead = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
        time.sleep(0.2)
        orphan = int(Path(f"/proc/{dead.pid}/task/{dead.pid}/children").read_text().split()[0])
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait()
        driver.gateway = dead
        # when the gateway is needed again
        driver.ensure_gateway()
        # then a new one serves, and the dead one's orphan was stopped first
        assert driver.gateway is not dead and driver.measure(0) == (Window(), Window())
        with pytest.raises(ProcessLookupError):
            os.killpg(dead.pid, 0)
        assert not Path(f"/proc/{orphan}").exists() or "Z" in _state(orphan)
    finally:
        driver.close()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
