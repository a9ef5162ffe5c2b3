"""`flywheel rollout`: status, wait and the controller's driver."""

from __future__ import annotations

from pathlib import Path

from flywheel.cli.rollout import controller
from flywheel.config import load_settings
from flywheel.rollout.controller import StateOnlyDriver
from flywheel.rollout.kubernetes import KubernetesDriver
from harness.cli import Flywheel


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
