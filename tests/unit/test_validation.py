"""Validation: structural and statistical checks of each batch against a contract, drift
findings, the sources allowed, and the report (the contract's inference and diff, until they
move to test_contract.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flywheel.config import ColumnTags, FeatureSettings, GeneratorSettings
from flywheel.contract import CategoricalProfile, Contract, announce, diff, infer_contract
from flywheel.synthetic import generate_day
from flywheel.validation import check_batch, validate_window
from tests.unit.conftest import FEATURES, POLICY, START, generated_days, policy_tagging


@pytest.fixture(scope="module")
def contract() -> Contract:
    return infer_contract(generated_days(5), FEATURES, bins=10)


def test_a_clean_batch_passes(contract: Contract) -> None:
    _, frame = generated_days(6)[-1]
    result = check_batch(frame, contract, POLICY, "d6")
    assert [f for f in result.findings if f.severity == "error"] == []
    assert max(result.psi.values()) < 0.1


@pytest.mark.parametrize(
    ("scenario", "column", "check"),
    [
        ("broken_nulls", "credit_score", "null rate"),
        ("broken_types", "credit_score", "type"),
        ("broken_missing_column", "tenure_months", "column present"),
        ("broken_renamed_column", "creditScore", "no unexpected columns"),
        ("broken_renamed_column", "credit_score", "column present"),
        ("new_category", "channel", "allowed values"),
    ],
)
def test_each_broken_batch_names_the_failing_column_and_check(
    contract: Contract, scenario: str, column: str, check: str
) -> None:
    _, frame = generated_days(1, scenario=scenario)[0]
    result = check_batch(frame, contract, POLICY, "bad")
    errors = {(f.column, f.check) for f in result.findings if f.severity == "error"}
    assert (column, check) in errors


def test_unseen_categories_can_be_a_warning(contract: Contract) -> None:
    _, frame = generated_days(1, scenario="new_category")[0]
    lenient = POLICY.model_copy(update={"unseen_categories": "warn"})
    result = check_batch(frame, contract, lenient, "d")
    assert not [f for f in result.findings if f.severity == "error"]
    assert any("mobile" in f.found for f in result.findings if f.severity == "warning")


def test_out_of_range_values_and_too_few_rows(contract: Contract) -> None:
    _, frame = generated_days(1)[0]
    frame = frame.head(40).copy()
    frame.loc[frame.index[:10], "age"] = 400
    errors = {f.check for f in check_batch(frame, contract, POLICY, "d").findings}
    assert {"range", "rows"} <= errors


def test_label_shift_is_reported_with_the_configured_severity(contract: Contract) -> None:
    _, frame = generated_days(1, scenario="label_shift")[0]
    warn = check_batch(frame, contract, POLICY, "d").findings
    strict = check_batch(
        frame, contract, POLICY.model_copy(update={"label_balance": "error"}), "d"
    ).findings
    assert [f.severity for f in warn if f.check == "label balance"] == ["warning"]
    assert [f.severity for f in strict if f.check == "label balance"] == ["error"]


def test_covariate_drift_raises_psi_and_can_stop_the_run(contract: Contract) -> None:
    settings = GeneratorSettings(rows_per_day=800, change_day=0, scenario="covariate_drift")
    frame = generate_day(START + timedelta(days=30), settings)
    policy = POLICY.model_copy(update={"drift": POLICY.drift.model_copy(update={"psi_fail": 0.5})})
    result = check_batch(frame, contract, policy, "late")
    assert result.psi["credit_score"] > 0.5
    assert ("credit_score", "drift (PSI)", "error") in {
        (f.column, f.check, f.severity) for f in result.findings
    }


def test_the_report_names_batch_column_and_check(contract: Contract) -> None:
    days = generated_days(3)
    days[1] = (days[1][0], days[1][1].drop(columns=["tenure_months"]))
    result = validate_window(days, contract, POLICY, "test reference", train=days[0][1])
    assert not result.passed
    report = result.markdown()
    assert "# Data validation: FAILED" in report
    assert f"| {days[1][0]} | tenure_months | column present | present | missing |" in report
    assert "KS (train vs newest)" in report
    assert "tenure_months: column present" in result.summary()


def test_a_column_from_an_unlisted_source_is_refused_naming_it_and_its_source(
    contract: Contract,
) -> None:
    # given a policy that allows two sources, and a batch whose columns come from others
    tags = {n: ColumnTags(source="bureau") for n in (*FEATURES.columns, "defaulted", "event_time")}
    policy = policy_tagging(**{**tags, "region": ColumnTags(source="scraper")}).model_copy(
        update={"allowed_sources": ("bureau", "crm")}
    )
    _, frame = generated_days(1)[0]
    # when the batch is checked, ssn among the columns it was delivered with (ingest dropped it)
    result = check_batch(frame, contract, policy, "d", columns=[*frame.columns, "ssn"])
    # then the column of an unlisted source and the untagged one are errors naming each
    found = {(f.column, f.found) for f in result.findings if f.check == "source"}
    assert found == {("region", "source scraper"), ("ssn", "no source tag")}
    assert all(f.severity == "error" for f in result.findings if f.check == "source")
    assert (
        "a source among bureau, crm"
        in validate_window(
            [("d", frame)], contract, policy, "ref", columns={"d": [*frame.columns, "ssn"]}
        ).summary()
    )
    # and with no allowed sources listed, no source is checked
    assert not [
        f for f in check_batch(frame, contract, POLICY, "d").findings if f.check == "source"
    ]


def test_a_tagged_column_that_is_no_feature_may_ride_along_unprofiled(contract: Contract) -> None:
    # given a batch carrying a hashed identifier and an untagged stray column
    _, frame = generated_days(1)[0]
    frame = frame.assign(ssn="ab12", stray=1)
    policy = policy_tagging(ssn=ColumnTags(pii=True))
    # when it is checked
    result = check_batch(frame, contract, policy, "d")
    # then only the untagged column is unexpected
    unexpected = [f.column for f in result.findings if f.check == "no unexpected columns"]
    assert unexpected == ["stray"] and "ssn" not in result.psi


def test_the_report_never_prints_a_pii_columns_values(contract: Contract) -> None:
    # given region tagged pii (hashed, allowed as a feature) and a batch with a new value
    policy = policy_tagging(region=ColumnTags(pii=True))
    _, frame = generated_days(1)[0]
    frame.loc[frame.index[0], "region"] = "9c0ffee"
    # when it is checked and reported
    result = validate_window([("d", frame)], contract, policy, "v1")
    # then the finding names the column and the check, not the value
    assert "region: allowed values" in result.summary()
    assert "9c0ffee" not in result.markdown() and "9c0ffee" not in result.summary()


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
