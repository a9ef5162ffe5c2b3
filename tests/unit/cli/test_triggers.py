"""`flywheel triggers`: check's summary and exit codes, hold and release, history, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import Flywheel

# Monitoring finds no traffic in these windows, so only forced or CI-reported triggers fire.
NOW = "2026-02-01T00:10"
QUIET = ("--set", "triggers.schedule=null")


@pytest.fixture(autouse=True)
def no_ci_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """An image may bake the commit in: the code-change trigger sees only what a test sets."""
    monkeypatch.delenv("FLYWHEEL_GIT_COMMIT", raising=False)
    monkeypatch.delenv("FLYWHEEL_IMAGE", raising=False)


def test_check_exits_3_when_nothing_fired_and_0_when_forced(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given production v1 and no traffic; when checked
    quiet = flywheel("-c", str(registered_config), *QUIET, "triggers", "check", "--now", NOW)
    # then every trigger is listed, nothing fired, and the exit code says so
    assert quiet.code == 3, quiet.text
    for kind in ("drift", "performance", "estimated_performance", "code_change"):
        assert f"- {kind} (" in quiet.out
    assert "not fired: nothing fired" in quiet.out
    assert "Decision record: " in quiet.out and "/triggers/loan-default/decisions/" in quiet.out
    # when CI reports another commit, then the code-change trigger fires (exit 0)
    changed = flywheel(
        "-c",
        str(registered_config),
        *QUIET,
        "triggers",
        "check",
        "--now",
        "2026-02-01T00:20",
        env={"FLYWHEEL_GIT_COMMIT": "f00dfeed"},
    )
    assert changed.code == 0, changed.text
    assert (
        "fired code_change (low): code change: commit f00dfeed (production v1: abc123)"
        in changed.out
    )
    # and history lists both decisions, one line each
    history = flywheel("-c", str(registered_config), "triggers", "history")
    lines = history.out.strip().splitlines()
    assert history.code == 0 and len(lines) == 2
    assert lines[0].startswith("2026-02-01T00:10:00  -") and "FIRED" in lines[1]


def test_a_hold_blocks_force_until_released(flywheel: Flywheel, registered_config: Path) -> None:
    config = ("-c", str(registered_config), *QUIET)
    assert flywheel(*config, "triggers", "hold", "bad upstream feed").code == 0
    held = flywheel(*config, "triggers", "check", "--now", NOW, "--force", "hotfix")
    assert (
        held.code == 3 and "blocked by held since" in held.out and "bad upstream feed" in held.out
    )
    assert flywheel(*config, "triggers", "release").code == 0
    forced = flywheel(*config, "triggers", "check", "--now", NOW, "--force", "hotfix")
    assert forced.code == 0 and "fired manual (high): forced: hotfix" in forced.out
    again = flywheel(*config, "triggers", "release")
    assert (
        again.code == 1 and "error: the trigger engine is not held; nothing to release" in again.err
    )


def test_submit_refuses_a_local_store_before_deciding(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given a project on local directories, when a check would submit to a cluster
    result = flywheel(
        "-c",
        str(registered_config),
        "triggers",
        "check",
        "--force",
        "x",
        "--submit",
        "--host",
        "http://127.0.0.1:9",
    )
    # then it is refused in one line, and no decision was recorded
    assert result.code == 1
    assert "a local directory: a cluster run needs an s3:// store" in result.err
    history = flywheel("-c", str(registered_config), "triggers", "history")
    assert history.out.strip() == "No decisions recorded yet."


def test_bad_input_is_one_line(flywheel: Flywheel, registered_config: Path) -> None:
    config = ("-c", str(registered_config))
    bad_now = flywheel(*config, "triggers", "check", "--now", "yesterday")
    assert bad_now.code == 1 and "error: --now 'yesterday' is not a date" in bad_now.err
    both = flywheel(*config, "triggers", "check", "--run", "--submit")
    assert both.code == 1 and "--run and --submit cannot be combined" in both.err
    feature = flywheel(*config, "--set", "triggers.drift.features.incme=0.2", "triggers", "check")
    assert (
        feature.code == 2
        and "triggers.drift.features.incme: 'incme' is not a feature" in feature.err
    )
