"""Data contracts: inferred from reference batches with their tags, stored and loaded, and
diffed against production's (the report of the changes included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.config import ColumnTags, FeatureSettings
from flywheel.contract import CategoricalProfile, Contract, announce, diff, infer_contract
from flywheel.validation import validate_window
from harness.batches import FEATURES, POLICY, generated_days, policy_tagging


@pytest.fixture(scope="module")
def contract() -> Contract:
    return infer_contract(generated_days(5), FEATURES, bins=10)


def test_inferred_contract_profiles_every_feature(contract: Contract) -> None:
    assert contract.features == FEATURES.columns
    assert set(contract.categorical["region"].fractions) == {"north", "south", "east", "west"}
    assert contract.numeric["credit_score"].min >= 300
    assert len(contract.numeric["income"].fractions) == len(contract.numeric["income"].edges) + 1
    assert 0.15 < contract.positive_rate < 0.4
    assert Contract.from_json(contract.to_json()) == contract


def test_the_contract_records_the_tags_and_old_contracts_still_load(contract: Contract) -> None:
    policy = policy_tagging(ssn=ColumnTags(pii=True, source="crm")).model_copy(
        update={"allowed_sources": ("crm",)}
    )
    tagged = infer_contract(generated_days(2), FEATURES, bins=10, policy=policy)
    stored = Contract.from_json(tagged.to_json())
    assert stored.columns == {"ssn": ColumnTags(pii=True, source="crm")}
    assert stored.allowed_sources == ("crm",) and stored.passthrough == ("ssn",)
    before = contract.model_dump(mode="json", exclude={"columns", "allowed_sources"})
    assert Contract.model_validate(before).columns == {}


def test_a_feature_added_in_the_configuration_is_an_announced_change(contract: Contract) -> None:
    # given production's contract, and batches that gained a column listed in features
    grown = FEATURES.model_copy(update={"numeric": (*FEATURES.numeric, "dti")})
    days = [(n, f.assign(dti=f["loan_amount"] / f["income"])) for n, f in generated_days(3)]
    candidate = infer_contract(days[:2], grown, bins=10)
    # when the window is checked against production's contract, the change announced
    changes = diff(contract, candidate)
    result = validate_window(days, announce(contract, candidate), POLICY, "v1", changes=changes)
    # then it passes, and the report shows the new column with its profile
    assert result.passed, result.summary()
    assert [(c.column, c.change) for c in changes] == [("dti", "added")]
    report = result.markdown()
    assert "## Contract changes" in report
    assert "| dti | added | – | numeric, " in report
    # and the same batches against production's contract alone are refused
    assert "dti: no unexpected columns" in validate_window(days, contract, POLICY, "v1").summary()


def test_the_contract_diff_names_removed_columns_type_and_tag_changes(contract: Contract) -> None:
    moved = FeatureSettings(
        numeric=tuple(n for n in FEATURES.numeric if n not in ("age", "late_payments")),
        categorical=(*FEATURES.categorical, "late_payments"),
    )
    policy = policy_tagging(region=ColumnTags(sensitive=True, source="crm"))
    candidate = infer_contract(generated_days(2), moved, bins=10, policy=policy)
    changes = {(c.column, c.change): c for c in diff(contract, candidate)}
    assert set(changes) == {
        ("age", "removed"),
        ("late_payments", "type"),
        ("region", "tags"),
    }
    assert changes[("region", "tags")].candidate == "sensitive, source crm"
    assert changes[("late_payments", "type")].candidate.startswith("categorical, ")
    # and no change is a section saying so
    same = validate_window(
        generated_days(1), contract, POLICY, "v1", changes=diff(contract, contract)
    )
    assert "None: the same columns, types and tags" in same.markdown()


def test_the_contract_diff_shows_no_values_of_a_column_either_contract_tags_pii(
    contract: Contract,
) -> None:
    # given production's older contract, which profiled people's names untagged
    names = CategoricalProfile(null_rate=0.0, fractions={"Alice Smith": 0.5, "Bob Jones": 0.5})
    production = contract.model_copy(
        update={"categorical": {**contract.categorical, "name": names}}
    )
    # and this run's, which tags the column pii: once as no feature, once as a numeric one
    tagged = {"name": ColumnTags(pii=True)}
    dropped = contract.model_copy(update={"columns": tagged})
    numbered = dropped.model_copy(
        update={"numeric": {**contract.numeric, "name": contract.numeric["age"]}}
    )
    for candidate, change in ((dropped, "removed"), (numbered, "type")):
        # when the contracts are compared and the changes reported
        changes = diff(production, candidate)
        report = validate_window(
            generated_days(1), contract, POLICY, "v1", changes=changes
        ).markdown()
        # then the change is named, with neither name nor the candidate's range in sight
        assert ("name", change) in [(c.column, c.change) for c in changes]
        assert "| name | tags | untagged | pii |" in report
        assert "Alice" not in report and "Bob Jones" not in report, report
        assert "pii: not shown" in report
    assert "pii: range not shown" in report


def test_a_regressions_label_bins_stay_productions_in_a_new_versions_contract() -> None:
    # given production's contract of diabetes and a new window whose label moved up
    from flywheel.contract import keep_label_bins
    from flywheel.problem import Problem
    from harness.problems import dataset_frame, settings_for

    frame = dataset_frame("diabetes")
    features = settings_for("diabetes", Path("unused")).features
    problem = Problem(task="regression", label="label")
    production = infer_contract([("old", frame)], features, 10, problem=problem)
    moved = frame.assign(label=frame["label"] + 40)
    inferred = infer_contract([("new", moved)], features, 10, problem=problem)
    assert inferred.label_profile != production.label_profile
    # when the new contract keeps production's bins
    kept = keep_label_bins(production, inferred, moved["label"])
    # then its label is profiled on production's edges, its own shares and moments
    assert kept.label_profile is not None and production.label_profile is not None
    assert kept.label_profile.edges == production.label_profile.edges
    assert kept.label_profile.fractions != production.label_profile.fractions
    assert sum(kept.label_profile.fractions) == pytest.approx(1.0)
    assert kept.label_profile.mean == pytest.approx(production.label_profile.mean + 40)
    # and a classifier's contract, or a first version's, is left as it is
    binary = Contract.model_validate({**inferred.model_dump(), "task": "binary"})
    assert keep_label_bins(production, binary, moved["label"]) is binary
