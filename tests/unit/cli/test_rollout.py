"""`flywheel rollout`: status, wait and the controller's driver."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flywheel import runs
from flywheel.cli.rollout import controller
from flywheel.config import Settings, load_settings
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.driver import StateOnlyDriver
from flywheel.rollout.kubernetes import KubernetesDriver
from flywheel.storage import open_store
from flywheel.tasks import run_record_key
from harness.cli import Flywheel
from harness.kfp import kfp_api


def test_status_and_wait_before_any_rollout(flywheel: Flywheel, registered_config: Path) -> None:
    status = flywheel("-c", str(registered_config), "rollout", "status")
    assert (status.code, status.out.strip()) == (0, "no rollout of loan-default yet")
    wait = flywheel("-c", str(registered_config), "rollout", "wait", "--timeout", "1")
    assert (wait.code, wait.err.strip()) == (1, "error: no rollout of loan-default to wait for")


def test_a_direct_deploy_is_a_recorded_rollout(flywheel: Flywheel, registered_config: Path) -> None:
    # given a second version
    assert flywheel("-c", str(registered_config), "demo", "bad-candidate").code == 0
    # when deployed directly, then the controller promoted it and status says so
    deployed = flywheel("-c", str(registered_config), "deploy", "v2", "--direct")
    assert (deployed.code, deployed.out.strip()) == (0, "production: v1 -> v2")
    status = flywheel("-c", str(registered_config), "rollout", "status")
    assert "promoted — v2 against v1" in status.out
    assert "deployed directly by hand" in status.out


def test_the_local_driver_only_records_and_the_kubernetes_one_talks_to_the_cluster(
    registered_config: Path, tmp_path: Path, monkeypatch: object
) -> None:
    settings = load_settings(registered_config, env={})
    assert isinstance(controller(settings, "local").driver, StateOnlyDriver)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # type: ignore[attr-defined]
    assert isinstance(controller(settings, "kubernetes").driver, KubernetesDriver)


def test_a_rollback_by_hand_while_a_controller_runs_is_left_to_that_controller(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given a canary of v2, driven by a controller that holds the rollout's lock
    assert flywheel("-c", str(registered_config), "demo", "bad-candidate").code == 0
    settings = load_settings(registered_config, env={})
    running = controller(settings, "local")
    running.hold()
    try:
        running.start("v2")
        # when an operator rolls it back from another shell
        rolled = flywheel("-c", str(registered_config), "rollback", "--reason", "paged")
        # then the decision is saved for the running controller, which is named
        assert rolled.code == 0, rolled.text
        assert "v2 will be rolled back by" in rolled.out
        assert running.lock is not None and running.lock.holder in rolled.out.replace("\n", "")
        status = flywheel("-c", str(registered_config), "rollout", "status")
        assert "ending (rolled_back) — v2 against v1" in status.out
        # and that controller carries it out at its next look
        assert running.tick().phase == "rolled_back"
    finally:
        running.let_go()
    status = flywheel("-c", str(registered_config), "rollout", "status")
    assert "rolled_back — v2 against v1" in status.out and "paged" in status.out


def test_decisions_by_hand_record_the_person_from_actor_or_user(
    flywheel: Flywheel, registered_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(registered_config)
    rollouts = _two_more_versions(flywheel, registered_config)
    history = rollouts.registry.history
    # given a canary of v2, when ada promotes it with --actor and a reason
    rollouts.start("v2")
    promoted = flywheel("-c", config, "promote", "--actor", "ada", "--reason", "looks fine")
    assert promoted.code == 0, promoted.text
    # then production's new revision names her and her command, with her reason
    moved = history("production")[-1]
    assert (moved.version, moved.actor, moved.reason) == (
        "v2",
        "ada (flywheel promote)",
        "rollout: looks fine",
    )
    # and given a canary of v3, when $USER rolls it back, then the record names bob
    rollouts.start("v3")
    assert flywheel("-c", config, "rollback", env={"USER": "bob"}).code == 0
    (rolled,) = rollouts.registry.records("v3", "rollout-rolled-back")
    assert (rolled["actor"], rolled["reason"]) == ("bob (flywheel rollback)", "rolled back by hand")
    # and when nobody is named, a direct deployment records the command alone
    monkeypatch.delenv("USER", raising=False)
    assert flywheel("-c", config, "deploy", "v3", "--direct").code == 0
    moved = history("production")[-1]
    assert (moved.version, moved.actor, moved.reason) == (
        "v3",
        "flywheel deploy --direct",
        "rollout: deployed directly by hand",
    )
    # and `models show` prints who moved each revision
    shown = flywheel("-c", config, "models", "show", "v2")
    assert "production v1 -> v2 by ada (flywheel promote): rollout: looks fine" in shown.out
    assert "production v2 -> v3 by flywheel deploy --direct:" in shown.out


# --- waiting for one version's rollout -----------------------------------------------


def _two_more_versions(flywheel: Flywheel, config: Path) -> RolloutController:
    for kind in ("errors", "slow"):  # v2 and v3: two models, so two versions
        assert flywheel("-c", str(config), "demo", "bad-candidate", "--kind", kind).code == 0
    return controller(load_settings(config, env={}), "local")


def test_wait_reports_the_rollout_of_the_version_it_names_not_the_latest_one(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given v2 rolled back, then v3 promoted
    rollouts = _two_more_versions(flywheel, registered_config)
    rollouts.start("v2")
    rollouts.rollback("paged", actor="test")
    rollouts.start("v3")
    rollouts.promote("every step passed", actor="test")
    # when waiting for each, then each gets its own rollout's decision
    v2 = flywheel("-c", str(registered_config), "rollout", "wait", "v2", "--timeout", "0")
    assert (v2.code, v2.out.strip()) == (1, "v2 rolled back: paged")
    v3 = flywheel("-c", str(registered_config), "rollout", "wait", "3", "--timeout", "0")
    assert (v3.code, v3.out.strip()) == (0, "v3 promoted: every step passed")


def test_wait_for_a_version_in_production_with_no_rollout_pending_passes_saying_so(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given v1, which went straight to production (nothing was there before it)
    waited = flywheel("-c", str(registered_config), "rollout", "wait", "v1", "--timeout", "0")
    assert (waited.code, waited.out.strip()) == (
        0,
        "v1 is in production, with no rollout of it pending",
    )


def test_wait_for_a_version_while_another_is_rolled_out_times_out_naming_it(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given a canary of v2 under way, and v3 registered
    rollouts = _two_more_versions(flywheel, registered_config)
    rollouts.start("v2")
    first = rollouts.policy.steps[0].weight
    # when waiting for v3, then it gives up naming the rollout in progress
    v3 = flywheel("-c", str(registered_config), "rollout", "wait", "v3", "--timeout", "0")
    assert (v3.code, v3.err.strip()) == (
        1,
        "error: no decision after 0s: no rollout of v3 has started yet; "
        "the rollout in progress is of v2",
    )
    # and waiting for v2 says where its canary is
    v2 = flywheel("-c", str(registered_config), "rollout", "wait", "v2", "--timeout", "0")
    assert v2.code == 1
    assert f"v2: progressing at {first}% (step 1/" in v2.out
    # and a version that does not exist is named
    v9 = flywheel("-c", str(registered_config), "rollout", "wait", "v9")
    assert v9.code == 1 and "v9" in v9.err


def test_wait_for_a_run_follows_the_version_it_registered_to_its_decision(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given a run started on KFP, which has registered nothing yet
    settings = load_settings(registered_config, env={})
    rollouts = _two_more_versions(flywheel, registered_config)
    with kfp_api(token=None) as kfp:
        runs.submit(settings, host=kfp.url, run_id="run-9")
        wait = ["-c", str(registered_config), "rollout", "wait", "--host", kfp.url]
        pending = flywheel(*wait, "--run", "run-9", "--timeout", "0")
        assert (pending.code, pending.err.strip()) == (
            1,
            "error: no decision after 0s: run run-9 has registered no version yet (KFP: PENDING)",
        )
        unknown = flywheel(*wait, "--run", "run-7", "--timeout", "0")
        assert unknown.err.strip() == f"error: KFP at {kfp.url} has no run named run-7"
        # when it registers v3, whose canary is then promoted
        _registers(settings, "run-9", "v3")
        rollouts.start("v3")
        rollouts.promote("every step passed", actor="test")
        # then waiting for the run passes, naming its version and the decision
        done = flywheel(*wait, "--run", "run-9", "--timeout", "0")
        assert (done.code, done.out.splitlines()) == (
            0,
            ["run run-9 registered v3", "v3 promoted: every step passed"],
        )
        both = flywheel(*wait, "v3", "--run", "run-9")
        assert (both.code, both.err.strip()) == (1, "error: give a VERSION or --run, not both")


def test_wait_for_a_run_that_blessed_nothing_or_failed_fails_naming_why(
    flywheel: Flywheel, registered_config: Path
) -> None:
    settings = load_settings(registered_config, env={})
    with kfp_api(token=None) as kfp:
        wait = ["-c", str(registered_config), "rollout", "wait", "--host", kfp.url]
        # given a run that succeeded without registering a version: its gate blessed nothing
        kfp.end(runs.submit(settings, host=kfp.url, run_id="run-5")["kfp_run_id"], "SUCCEEDED")
        unblessed = flywheel(*wait, "--run", "run-5")
        assert (unblessed.code, unblessed.out.strip()) == (
            1,
            "run run-5 registered no version: its gate did not bless the candidate",
        )
        # and one that failed
        kfp.end(runs.submit(settings, host=kfp.url, run_id="run-6")["kfp_run_id"], "FAILED")
        failed = flywheel(*wait, "--run", "run-6")
        assert (failed.code, failed.err.strip()) == (
            1,
            "error: run run-6 ended FAILED on KFP without registering a version",
        )
        # and one that registered v1 again (the same model), already in production
        kfp.end(runs.submit(settings, host=kfp.url, run_id="run-4")["kfp_run_id"], "SUCCEEDED")
        _registers(settings, "run-4", "v1")
        again = flywheel(*wait, "--run", "run-4")
        assert (again.code, again.out.splitlines()) == (
            0,
            ["run run-4 registered v1", "v1 is in production, with no rollout of it pending"],
        )


def test_a_rollout_from_before_the_run_is_not_the_runs(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given v2 rolled back, then a run, started an hour later, that registered v2 again
    settings = load_settings(registered_config, env={})
    rollouts = _two_more_versions(flywheel, registered_config)
    rollouts.start("v2")
    rollouts.rollback("paged", actor="test")
    with kfp_api(token=None) as kfp:
        kfp_run_id = runs.submit(settings, host=kfp.url, run_id="run-8")["kfp_run_id"]
        later = datetime.now(UTC) + timedelta(hours=1)
        kfp.runs[kfp_run_id]["created_at"] = later.strftime("%Y-%m-%dT%H:%M:%SZ")
        _registers(settings, "run-8", "v2")
        wait = ["-c", str(registered_config), "rollout", "wait", "--host", kfp.url]
        # when its deploy step has not started v2's new canary, then the old one is not it
        pending = flywheel(*wait, "--run", "run-8", "--timeout", "0")
        assert pending.err.strip() == (
            "error: no decision after 0s: no rollout of v2 has started yet"
        )
        # and once the run ended without starting one, the wait fails saying so
        kfp.end(kfp_run_id, "SUCCEEDED")
        ended = flywheel(*wait, "--run", "run-8")
        assert ended.err.strip() == (
            "error: run run-8 registered v2 but ended SUCCEEDED on KFP without starting its rollout"
        )


def _registers(settings: Settings, run_id: str, version: str) -> None:
    """What a run's register step leaves in the store for `version`."""
    record = {"version": version, "location": "", "aliases": []}
    open_store(settings.storage.uri, settings.storage).write(
        run_record_key(run_id), json.dumps(record).encode()
    )
