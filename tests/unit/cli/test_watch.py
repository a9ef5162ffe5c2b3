"""`flywheel watch`: one look that decides nothing needs doing, its bad input, and SIGTERM.

A look that fires, runs and registers is in tests/integration/test_local_pipeline.py
(a kfp.local run); the canary after it is `flywheel run --deploy`'s (tests/e2e).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from flywheel import synthetic
from flywheel.config import load_settings
from flywheel.storage import LocalStore
from flywheel.stores import Stores
from flywheel.triggers import engine
from harness.cli import Flywheel
from harness.servers import free_ports
from harness.traffic import log_traffic


@pytest.fixture(autouse=True)
def no_ci_build(monkeypatch: pytest.MonkeyPatch) -> None:
    # What CI built feeds the code-change trigger; these tests are not in CI's shoes.
    monkeypatch.delenv("FLYWHEEL_GIT_COMMIT", raising=False)
    monkeypatch.delenv("FLYWHEEL_IMAGE", raising=False)


def test_once_with_nothing_to_do_records_the_decision_and_runs_nothing(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given v1 in production, no traffic yet, and the weekly schedule's tick not yet come
    settings = load_settings(registered_config, env={})
    stores = Stores(settings)
    registry = stores.registry
    created = registry.manifest("v1").created_at
    # when watch looks once, at the moment v1 was registered
    result = flywheel("-c", str(registered_config), "watch", "--once", "--now", created)
    # then it monitored, decided nothing fired, said where the decision is, and ran nothing
    assert result.code == 0, result.text
    assert "monitor: 0 window report(s), 0 recorded; no dataset drift" in result.out
    assert "decide: did not fire: nothing fired" in result.out
    (decision,) = engine.history(stores.ledger)
    assert decision["fired"] is False and decision["reason"] == "nothing fired"
    assert f"record {decision['record']}" in result.out
    assert [m.version for m in registry.versions()] == ["v1"]
    assert "run run-" not in result.out


def test_a_pushgateway_that_is_down_is_a_warning_and_the_engine_still_decides(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given a day of traffic to production, a Pushgateway nobody listens on, and only
    # the code-change trigger on (so that nothing here can start a run)
    settings = load_settings(registered_config, env={})
    generator = settings.data.generator
    day = synthetic.generate_day(generator.start_date + timedelta(days=6), generator)
    log_traffic(LocalStore(settings.storage.uri), "loan-default", "v1", day)
    (port,) = free_ports(1)
    off = ["schedule", "drift", "performance", "estimated_performance"]
    sets = [f"--set=triggers.{name}=null" for name in off]
    sets.append(f"--set=monitoring.pushgateway=http://127.0.0.1:{port}")
    sets.append("--set=monitoring.window=hour")
    # when watch looks once, by the end of this hour
    until = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:00")
    result = flywheel("-c", str(registered_config), *sets, "watch", "--once", "--now", until)
    # then monitoring's records are stored, the push failure is one warning, and the
    # engine decided all the same
    assert result.code == 0, result.text
    assert re.search(r"monitor: [1-9]\d* window report\(s\), [1-9]\d* recorded", result.out)
    assert result.err.strip().startswith(
        f"warning: cannot reach the Pushgateway at http://127.0.0.1:{port}"
    )
    assert "decide: did not fire: nothing fired" in result.out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--now", "2026-01-06"], 1, "error: --now needs --once: a loop looks at the real time"),
        (
            ["--once", "--now", "yesterday"],
            1,
            "error: --now 'yesterday' is not a date or time like 2026-03-01 or 2026-03-01T12:00",
        ),
        (
            ["--interval", "0"],
            2,
            "Invalid value for '--interval': Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_options_are_one_line_before_anything_is_read(
    flywheel: Flywheel, config_file: Path, args: list[str], code: int, message: str
) -> None:
    result = flywheel("-c", str(config_file), "watch", *args)
    assert result.code == code
    assert message in " ".join(result.err.replace("│", " ").split())
    assert "Traceback" not in result.text
    # nothing was written to the project's store
    store = Path(load_settings(config_file, env={}).storage.uri)
    assert not store.exists() or not LocalStore(store).list("")


def test_once_with_the_store_down_is_one_error_line_and_no_decision(
    flywheel: Flywheel, registered_config: Path, tmp_path: Path
) -> None:
    # given a configuration whose store does not answer
    (port,) = free_ports(1)
    config = yaml.safe_load(registered_config.read_text())
    config["storage"] = {"uri": "s3://flywheel/store", "endpoint": f"127.0.0.1:{port}"}
    config["storage"]["secure"] = False
    path = tmp_path / "down.yaml"
    path.write_text(yaml.safe_dump(config))
    # when watch looks once, then it fails on one line naming the store
    result = flywheel("-c", str(path), "watch", "--once")
    assert result.code == 1
    assert result.err.strip().count("\n") == 0, result.err
    assert result.err.startswith("error: cannot read loan-default's logs and registry")
    assert "decide:" not in result.out


def test_sigterm_while_the_loop_waits_stops_it_at_once(registered_config: Path) -> None:
    # given watch looping every hour, its first look done
    # (the schedule off, so that no run starts even when its tick has just passed)
    command = ["-c", str(registered_config), "--set", "triggers.schedule=null", "watch"]
    watch = subprocess.Popen(
        [sys.executable, "-m", "flywheel.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watch.stdout is not None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        lines.append(watch.stdout.readline())
        if lines[-1].startswith("next look at") or not lines[-1]:
            break
    assert lines[-1].startswith("next look at"), "".join(lines) + watch.stderr.read()
    # when it gets SIGTERM, then it exits straight away (128 + 15), without a traceback
    started = time.monotonic()
    watch.send_signal(signal.SIGTERM)
    assert watch.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5
    assert "Traceback" not in watch.stderr.read()
