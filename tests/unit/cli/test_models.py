"""`flywheel models`: versions, aliases, one version's lineage and what changed between two."""

from __future__ import annotations

import json
from pathlib import Path

from flywheel.config import load_settings
from flywheel.registry import Registry
from harness.cli import Flywheel


def _row(table: str, first: str) -> dict[str, str]:
    """One row of a rich table as column -> text, joining the lines a narrow terminal folds."""
    head = next(line for line in table.splitlines() if line.startswith("┃"))
    header = [cell.strip() for cell in head.strip("┃").split("┃")]
    lines = [line.strip("│").split("│") for line in table.splitlines() if line.startswith("│")]
    start = next(i for i, cells in enumerate(lines) if cells[0].strip() == first)
    row = [cell.strip() for cell in lines[start]]
    for cells in lines[start + 1 :]:
        if cells[0].strip():
            break
        row = [
            f"{a} {b.strip()}".strip() if a.endswith(",") else a + b.strip()
            for a, b in zip(row, cells, strict=True)
        ]
    return dict(zip(header, row, strict=True))


def test_list_shows_each_version_with_its_aliases(
    flywheel: Flywheel, registered_config: Path
) -> None:
    result = flywheel("-c", str(registered_config), "models", "list")
    assert result.code == 0
    v1 = _row(result.out, "v1")
    assert v1["aliases"] == "production, candidate"
    assert v1["metric"] == "roc_auc"
    assert v1["run"] == "r1"


def test_show_resolves_an_alias_and_prints_the_lineage(
    flywheel: Flywheel, registered_config: Path
) -> None:
    result = flywheel("-c", str(registered_config), "models", "show", "production")
    assert result.code == 0, result.text
    assert "loan-default v1 at" in result.out
    assert "git commit abc123" in result.out
    assert "trained because: manual run" in result.out.splitlines()
    assert "files contract.json, decision.json" in result.out
    # each alias revision with who moved it: here the run that registered v1
    assert "production - -> v1 by run r1: first model: nothing was in production" in result.out
    assert "candidate - -> v1 by run r1: blessed by the gate" in result.out


def test_show_of_a_faulty_version_whose_lineage_lists_plain_days(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given a drill version, whose lineage records batch days as plain strings
    assert flywheel("-c", str(registered_config), "demo", "bad-candidate").code == 0
    # when shown, then it prints rather than failing on the lineage's shape
    result = flywheel("-c", str(registered_config), "models", "show", "v2")
    assert result.code == 0, result.text
    assert "loan-default v2" in result.out


def test_show_of_an_unknown_version_or_unset_alias(
    flywheel: Flywheel, registered_config: Path
) -> None:
    unknown = flywheel("-c", str(registered_config), "models", "show", "v9")
    assert (unknown.code, unknown.err.strip()) == (1, "error: loan-default has no version v9")
    unset = flywheel("-c", str(registered_config), "models", "show", "staging")
    assert unset.err.strip() == "error: alias 'staging' of loan-default is not set"


def _second_version(config: Path) -> None:
    """Register v2 beside v1: another window, a stricter policy, one more feature, other
    metrics, and other permutation importances (v1's are the ones evaluate measured)."""
    registry = Registry.from_settings(load_settings(config, env={}))
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    lineage = json.loads(files["lineage.json"])
    lineage["config"]["promotion"]["min_metric"] = 0.8
    lineage["config"]["features"]["numeric"].append("savings")
    lineage["data"]["batches"] = [*lineage["data"]["batches"][1:], {"day": "2026-01-06"}]
    lineage["data"]["content_hash"] = "f" * 64
    metrics = json.loads(files["metrics.json"])
    metrics["candidate_newest_roc_auc"] = round(metrics["candidate_newest_roc_auc"] + 0.01, 6)
    evaluation = json.loads(files["evaluation.json"])
    evaluation["candidate"]["importance"] = {
        "credit_score": {"mean": 0.12, "std": 0.01, "low": 0.1, "high": 0.14}
    }
    files.update(
        {
            "lineage.json": json.dumps(lineage).encode(),
            "metrics.json": json.dumps(metrics).encode(),
            "evaluation.json": json.dumps(evaluation).encode(),
            "model.joblib": files["model.joblib"] + b"\n",  # another fingerprint
        }
    )
    assert registry.register(files, run_id="r2").version == "v2"


def test_diff_shows_what_changed_between_two_versions(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given v1 and a v2 with another window, policy, feature and metrics
    _second_version(registered_config)
    # when diffed
    result = flywheel("-c", str(registered_config), "models", "diff", "v1", "v2")
    # then the changed key, the window, the features, the metrics and importances are shown
    assert result.code == 0, result.text
    lines = result.out.splitlines()
    assert lines[0] == "loan-default v1 -> v2"
    assert "configuration: 2 key(s) changed" in lines
    assert "  promotion.min_metric: 0.7 -> 0.8" in lines
    assert any(line.startswith("  features.numeric: [") for line in lines)
    assert (
        "data window: 2026-01-01..2026-01-05 (5 batches) -> 2026-01-02..2026-01-06 (5 batches)"
        in lines
    )
    assert "  batches added: 2026-01-06; dropped: 2026-01-01" in lines
    assert any(line.endswith(" -> ffffffffffff") for line in lines)
    assert "features: added savings; removed none" in lines
    roc = _row(result.out, "candidate_newest_roc_auc")
    assert roc["change"] == "+0.0100"
    importance = _row(result.out[result.out.index("permutation importance") :], "credit_score")
    measured = json.loads(
        Registry.from_settings(load_settings(registered_config, env={})).read(
            "v1", "evaluation.json"
        )
    )["candidate"]["importance"]["credit_score"]
    assert importance["v1"] == (
        f"{measured['mean']:.4f} [{measured['low']:.4f}, {measured['high']:.4f}]"
    )
    assert importance["v2"] == "0.1200 [0.1000, 0.1400]"


def test_diff_of_a_version_with_itself_and_without_importances(
    flywheel: Flywheel, registered_config: Path
) -> None:
    # given a version whose evaluation predates importances: v1's files without them
    registry = Registry.from_settings(load_settings(registered_config, env={}))
    files = {name: registry.read("v1", name) for name in registry.manifest("v1").files}
    evaluation = json.loads(files["evaluation.json"])
    del evaluation["candidate"]["importance"]
    files["evaluation.json"] = json.dumps(evaluation).encode()
    files["model.joblib"] += b"\n"  # another fingerprint
    assert registry.register(files, run_id="r2").version == "v2"
    # when diffed with itself
    result = flywheel("-c", str(registered_config), "models", "diff", "v2", "v2")
    assert result.code == 0, result.text
    assert "configuration: no key(s) changed" in result.out
    assert "(the same data)" in result.out
    assert "features: the same 9" in result.out
    assert "permutation importance" not in result.out


def test_diff_of_an_unknown_version_is_one_line(
    flywheel: Flywheel, registered_config: Path
) -> None:
    result = flywheel("-c", str(registered_config), "models", "diff", "v1", "v9")
    assert (result.code, result.err.strip(), result.out) == (
        1,
        "error: loan-default has no version v9",
        "",
    )
