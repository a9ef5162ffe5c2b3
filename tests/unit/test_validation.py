"""Validation: structural and statistical checks of each batch against a contract, drift
findings, the sources allowed, and the report."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flywheel.config import ColumnTags, GeneratorSettings
from flywheel.contract import Contract, infer_contract
from flywheel.synthetic import generate_day
from flywheel.validation import check_batch, validate_window
from harness.batches import FEATURES, POLICY, START, generated_days, policy_tagging


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


def test_one_stray_value_in_81_rows_passes_a_range_from_486_and_a_tenth_fails() -> None:
    # given the issue's case: a contract profiled from 486 rows, then a batch of 81
    _, day = generated_days(1)[0]
    contract = infer_contract([("ref", day.head(486))], FEATURES, bins=10)
    batch = day.iloc[486:567].copy()
    age = contract.numeric["age"]
    outside = round(age.max + (age.max - age.min))  # beyond the range and its slack
    # when one age (1.2%) lies outside, then the batch passes
    batch.loc[batch.index[:1], "age"] = outside
    assert not [f for f in check_batch(batch, contract, POLICY, "d").findings if f.check == "range"]
    # and when a tenth do, it fails, naming the feature, the count, the batch and the bound
    batch.loc[batch.index[:8], "age"] = outside
    (found,) = [f for f in check_batch(batch, contract, POLICY, "d").findings if f.check == "range"]
    assert (found.column, found.severity, found.found) == ("age", "error", "8 of 81 (9.9%) outside")
    assert found.expected.startswith("at most ") and " of 81 outside [" in found.expected


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
    # given region tagged pii (hashed, allowed as a feature), a batch with a new value in a
    # tenth of its rows, and one with it in a single row (few enough for a healthy batch)
    policy = policy_tagging(region=ColumnTags(pii=True))
    _, frame = generated_days(1)[0]
    once = frame.copy()
    frame.loc[frame.index[::10], "region"] = "9c0ffee"
    once.loc[once.index[0], "region"] = "9c0ffee"
    # when each is checked and reported
    result = validate_window([("d", frame), ("e", once)], contract, policy, "v1")
    # then the error and the warning name the column and the check, not the value
    assert "region: allowed values" in result.summary()
    assert [f.batch for f in result.warnings if f.check == "allowed categories"] == ["e"]
    assert "9c0ffee" not in result.markdown() and "9c0ffee" not in result.summary()


@pytest.mark.parametrize("scenario", ["stable", "broken_nulls", "broken_types", "new_category"])
def test_a_frame_typed_by_the_contract_skips_pandera_and_pandera_agrees(
    contract: Contract, scenario: str
) -> None:
    from flywheel.validation import _conforms, _schema, _structure_findings

    # given a batch, as delivered and as the monitor builds served rows (typed columns)
    _, frame = generated_days(1, scenario=scenario)[0]
    frames = [frame]
    if scenario != "broken_types":
        frames.append(frame.assign(**{n: frame[n].astype("float64") for n in contract.numeric}))
    schema = _schema(
        contract.time_column,
        contract.label,
        list(contract.numeric),
        list(contract.categorical),
        [],
        contract.problem,
    )
    for each in frames:
        # when the fast check says it conforms, then pandera finds nothing either
        found = _structure_findings(each, schema, list(contract.numeric), "b", contract.label)
        assert not _conforms(each, contract, []) or found == []
    # and a typed batch conforms, whatever its values
    assert _conforms(frames[-1], contract, []) == (scenario != "broken_types")
