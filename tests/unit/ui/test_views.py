"""What each page shows, read from a store the loop wrote."""

from __future__ import annotations

import pytest

from flywheel.registry import CANDIDATE, PRODUCTION, Registry
from flywheel.storage import LocalStore
from flywheel.ui.catalog import Catalog
from flywheel.ui.views import PII, NotFound, Views, metric_table, paginate, redact
from harness.loopstore import ROLLOUT


@pytest.fixture
def views(loop_store: LocalStore) -> Views:
    return Views(Catalog(loop_store), "loan-default")


def test_the_versions_page_shows_what_the_registry_holds(
    views: Views, loop_store: LocalStore
) -> None:
    page = views.versions(1)
    registry = Registry(loop_store, "loan-default")
    assert [r["version"] for r in page.items] == [m.version for m in registry.versions()][::-1]
    rows = {r["version"]: r for r in page.items}
    assert rows["v1"]["aliases"] == [PRODUCTION] and rows["v2"]["aliases"] == [CANDIDATE]
    assert rows["v2"]["because"] == "drift: income drifted" and rows["v2"]["run_id"] == "run-2"
    assert rows["v1"]["blessed"] is True


def test_a_version_shows_its_gate_lineage_records_and_hides_pii_config(views: Views) -> None:
    shown = views.version("v2")
    assert shown["decision"]["checks"] and shown["evaluation"]
    assert shown["lineage"]["run"] == "run-2"
    assert [r["kind"] for r in shown["records"]][:2] == ["rollout-start", "rollout-look"]
    assert shown["rollouts"] and shown["config"]["model.test_size"] == 0.3
    with pytest.raises(NotFound, match="no version v9"):
        views.version("v9")


def test_the_diff_names_the_changed_configuration(views: Views) -> None:
    shown = views.diff("v1", "v2")
    assert ("model.test_size", 0.2, 0.3) in shown["config"] or any(
        k == "model.test_size" for k, *_ in shown["config"]
    )


def test_the_alias_history_lists_every_revision_with_its_actor(
    views: Views, loop_store: LocalStore
) -> None:
    shown = views.aliases(1)
    registry = Registry(loop_store, "loan-default")
    for alias in (PRODUCTION, CANDIDATE):
        expected = [s.model_dump() for s in registry.history(alias)][::-1]
        assert shown["history"][alias] == expected
    actors = [s["actor"] for s in shown["history"][PRODUCTION]]
    assert actors[:2] == ["ada (flywheel rollback)", f"rollout {ROLLOUT}"]
    assert shown["timeline"].count("<rect") == 3 + 2


def test_a_rollout_shows_its_looks_steps_and_ending(views: Views) -> None:
    assert [r["outcome"] for r in views.rollouts(1).items] == ["promoted"]
    shown = views.rollout(ROLLOUT)
    assert len(shown["looks"]) == 3 and shown["ending"]["outcome"] == "promoted"
    assert [name for name, _ in shown["plots"]] == ["error rate"]
    assert not shown["progressing"]
    with pytest.raises(NotFound):
        views.rollout("v2-1")


def test_a_trigger_decision_names_the_run_it_started_and_redacts_pii(views: Views) -> None:
    (row,) = views.triggers(1).items
    assert row["fired"] and row["run"] == "run-2"
    inputs = row["checks"][0]["inputs"]["psi"]
    assert inputs["income"] == 0.4 and inputs["region"] == {"north": 0.9}  # numbers kept


def test_runs_newest_first_with_their_outcome_and_their_comparison(views: Views) -> None:
    rows = views.runs(1).items
    assert [(r["run_id"], r["outcome"]) for r in rows] == [("run-3", None), ("run-2", "succeeded")]
    compared = views.compare_runs("run-2", "run-3")
    assert compared["versions"] == ["v2", None] and compared["diff"] is None
    assert ("actor", None, "ada") in compared["rows"]


def test_a_run_record_from_before_outcomes_were_kept_reads_as_the_ledger_reads_it(
    loop_store: LocalStore,
) -> None:
    key = "triggers/loan-default/runs/run-2/finished.json"
    loop_store.write(
        key, b'{"run_id": "run-2", "finished_at": "2026-03-02T11:00:00Z", "succeeded": false}'
    )
    rows = Views(Catalog(loop_store), "loan-default").runs(1).items
    assert [(r["run_id"], r["outcome"]) for r in rows] == [("run-3", None), ("run-2", "failed")]
    assert rows[1]["finished_at"].startswith("2026-03-02T11:00:00")


def test_monitoring_shows_a_versions_windows_with_the_reports_plots(views: Views) -> None:
    shown = views.monitoring(None, "day", 1)
    assert shown["version"] == "v1" and len(shown["rows"]) == 3
    assert len(shown["captions"]) == 5
    plot = views.monitoring_figure("v1", "day", 1, 0)
    assert plot.startswith(b"<?xml") and b"<svg" in plot
    assert views.monitoring_figure("v1", "day", 1, 0) is plot  # drawn once
    with pytest.raises(NotFound, match="no plot 9"):
        views.monitoring_figure("v1", "day", 1, 9)
    with pytest.raises(NotFound):
        views.monitoring("v7", "day", 1)


def test_redact_keeps_a_pii_columns_statistics_and_drops_its_values() -> None:
    value = {"psi": {"region": 0.3}, "unseen": {"region": ["north", 2]}, "age": ["x"]}
    assert redact(value, {"region"}) == {
        "psi": {"region": 0.3},
        "unseen": {"region": [PII, 2]},
        "age": ["x"],
    }


def test_paginate_clamps_the_page() -> None:
    assert paginate(list(range(5)), 9, 2) == ([4], 3)
    assert paginate([], 1, 2) == ([], 1)


def test_a_versions_metrics_are_a_table_of_model_and_data() -> None:
    table = metric_table(
        {
            "candidate_newest_roc_auc": 0.8,
            "candidate_holdout_roc_auc": 0.7,
            "production_newest_roc_auc": 0.75,
            "candidate_importance_income": 0.04,
            "rows": 3,
        }
    )
    assert table["rows"] == {
        "roc_auc": {"candidate_newest": 0.8, "candidate_holdout": 0.7, "production_newest": 0.75}
    }
    assert table["importance"] == {"income": 0.04} and table["other"] == {"rows": 3}


def test_a_version_whose_run_stopped_is_listed_as_incomplete(loop_store: LocalStore) -> None:
    # given a claim and no manifest, as a registration that died half way leaves
    loop_store.write("models/loan-default/versions/v3/claim.json", b"{}")
    views = Views(Catalog(loop_store), "loan-default")
    # then it is listed, as incomplete, and its page says so
    assert views.versions(1).items[0] == {"version": "v3", "incomplete": True}
    with pytest.raises(NotFound, match="v3 is incomplete"):
        views.version("v3")
