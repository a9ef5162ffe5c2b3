"""Each task's example, the whole loop on scikit-learn's own table, as its README says to run
it: split the table into dated batches, train and register a first version on the older days,
train a second on every day and roll it out as a local canary (two real seldon-core
microservices behind the gateway, the table's rows replayed as traffic, labels as feedback),
monitor what was served, and ask the trigger engine."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.cli import fresh_environment

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FLYWHEEL = REPO / ".venv" / "bin" / "flywheel"

# example: (scikit-learn table, rows a day, the day the first version is trained up to,
# the task's line in the monitor's output)
EXAMPLES = {
    "breast-cancer": ("breast_cancer", 60, "2026-01-08", "accuracy: "),
    "wine": ("wine", 30, "2026-01-05", "accuracy: "),
    "diabetes": ("diabetes", 60, "2026-01-07", "rmse: "),
}


def _flywheel(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = fresh_environment()
    return subprocess.run(
        [str(FLYWHEEL), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_each_task_runs_the_whole_loop_on_its_example(example: str, tmp_path: Path) -> None:
    table, rows, first_day, measured = EXAMPLES[example]
    project = tmp_path / example
    project.mkdir()
    shutil.copy(REPO / "examples" / example / "flywheel.yaml", project / "flywheel.yaml")
    task = {"breast-cancer": "binary", "wine": "multiclass", "diabetes": "regression"}[example]
    # given the table as dated batches
    _ok(_flywheel(project, "data", "split", f"sklearn:{table}", "--rows-per-day", str(rows)))
    # when a first version is trained on the older days: it is production
    first = _ok(_flywheel(project, "run", "--as-of", first_day))
    assert f"Task: {task}" in first and "Gate: BLESSED" in first
    assert f"Registered {example} v1" in first and "production is v1" in first
    # and a second, on every day, is rolled out as a canary
    second = _ok(_flywheel(project, "run", "--deploy", "--rps", "200"))
    assert f"Registered {example} v2" in second
    decided = [line for line in second.splitlines() if line.startswith(("PROMOTED", "ROLLED BACK"))]
    assert decided, second[-4000:]
    store = project / ".flywheel" / "store"
    newest = sorted((store / "rollouts" / example).glob("*.json"))[-1]
    rollout = json.loads(newest.read_text())
    assert (rollout["canary"], rollout["stable"]) == ("v2", "v1")
    # then each look judged the task's checks: the divergence of its answers, and the label
    # check at the step that requires it (accuracy, or a regression's mean absolute error)
    label_check = "mean absolute error" if task == "regression" else "accuracy"
    looks = [line for line in second.splitlines() if "step 1/2 canary 50%" in line]
    assert any("prediction divergence" in line and label_check in line for line in looks)
    # and production is the version the decision says
    moves = sorted((store / "models" / example / "aliases" / "production").glob("*.json"))
    production = json.loads(moves[-1].read_text())
    expected = "v2" if rollout["phase"] == "promoted" else "v1"
    assert rollout["phase"] in ("promoted", "rolled_back") and production["version"] == expected
    assert decided[0].startswith("PROMOTED" if expected == "v2" else "ROLLED BACK")
    # and monitoring reads what was served, with the task's metrics on the labels
    until = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:00")
    monitored = _ok(_flywheel(project, "monitor", "--until", until))
    assert "requests" in monitored and measured in monitored, monitored
    assert "Recorded" in monitored
    # and the trigger engine, as of the end of those windows, judges production on them in the
    # task's metric, and records why it fires or not (exit 0 fired, 3 not)
    decision = _flywheel(project, "triggers", "check", "--now", f"{until}:00Z")
    assert decision.returncode in (0, 3), decision.stdout + decision.stderr
    performance = next(
        line for line in decision.stdout.splitlines() if "performance (high)" in line
    )
    assert f"{measured.rstrip(': ')} " in performance and " labels of " in performance
    assert "Decision record:" in decision.stdout
