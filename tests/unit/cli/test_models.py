"""`flywheel models`: versions, aliases and one version's lineage."""

from __future__ import annotations

from pathlib import Path

from tests.unit.cli.conftest import Flywheel


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
    assert "production - -> v1: first model: nothing was in production" in result.out


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
