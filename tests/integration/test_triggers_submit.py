"""`flywheel triggers check --submit` against SeaweedFS and a loopback fake of KFP's v2beta1
runs API (no KFP cluster here): the run carries the decision's reason, and counts as in flight."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel.config import Settings, load_settings
from flywheel.storage import LocalStore, open_store
from harness.cli import Flywheel
from harness.cli import flywheel as cli  # noqa: F401  (the `flywheel` fixture, as `cli`)
from harness.kfp import kfp_api

pytestmark = pytest.mark.integration

NOW = "2026-02-01T00:10"


def test_a_forced_check_submits_a_run_with_its_reason_and_then_waits_for_it(
    registered: Settings,
    s3_env: Callable[[str], list[str]],
    cli: Flywheel,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the registry and the batches in a bucket
    overrides = s3_env("triggers")
    bucket = overrides[-1].split("=", 1)[1].rsplit("/", 1)[0]
    settings = load_settings(
        None,
        env={},
        overrides=[*overrides, f"data.source={bucket}/batches", "triggers.schedule=null"],
    )
    for source, target in (
        (registered.storage.uri, settings.storage.uri),
        (registered.data.source, settings.data.source),
    ):
        local, remote = LocalStore(source), open_store(target, settings.storage)
        for key in local.list(""):
            if not key.startswith(("predictions/", "feedback/", "monitoring/", "triggers/")):
                remote.write(key, local.read(key))
    config = tmp_path / "flywheel.yaml"
    config.write_text(yaml.safe_dump(json.loads(settings.to_json())))
    monkeypatch.delenv("FLYWHEEL_GIT_COMMIT", raising=False)
    with kfp_api(None) as kfp:

        def forced(reason: str) -> Any:
            return cli("-c", str(config), "triggers", "check", "--now", NOW, "--force", reason,
                       "--submit", "--host", kfp.url)  # fmt: skip

        # when a forced check submits
        first = forced("new features")
        # then a run started on KFP, with the decision's reason and record as parameters
        assert first.code == 0, first.text
        assert "fired manual (high): forced: new features" in first.out
        assert f"on {kfp.url}" in first.out
        (run,) = kfp.runs.values()
        parameters = run["runtime_config"]["parameters"]
        assert parameters["trigger_reason"] == "forced: new features"
        assert parameters["trigger_decision"].startswith(
            f"{bucket}/flywheel/triggers/loan-default/decisions/"
        )
        # when checked again, then the run in flight blocks it, and nothing is submitted
        second = forced("again")
        assert second.code == 3 and "blocked by run " in second.out
        assert len(kfp.runs) == 1
        # when KFP reports the run ended, then the next check submits again
        kfp.end(run["run_id"], "SUCCEEDED")
        third = forced("again")
        assert third.code == 0, third.text
        assert "has ended on" in third.out and len(kfp.runs) == 2
    # and a KFP that is down is one line, with no decision recorded for that look (at the same
    # time: a run past run_timeout_hours is not asked about)
    before = open_store(settings.storage.uri, settings.storage).list("triggers")
    down = cli("-c", str(config), "triggers", "check", "--now", NOW, "--submit", "--host", kfp.url)
    assert down.code == 1 and "cannot reach KFP" in down.err, down.text
    assert "Traceback" not in down.text
    after = open_store(settings.storage.uri, settings.storage).list("triggers")
    assert after == before
