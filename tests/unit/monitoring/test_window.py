"""What a look measures about a window, and what against: the record's round trip, its parts'
verdicts, and a version's calibrators fitted once."""

from __future__ import annotations

from dataclasses import replace

from flywheel.findings import Finding
from flywheel.monitoring.window import Invariants, Skew, VersionReference, WindowReport


def test_a_report_reads_back_equal_to_what_was_written(report: WindowReport) -> None:
    assert WindowReport.model_validate_json(report.model_dump_json()) == report


def test_skew_agrees_only_when_no_sampled_row_disagreed() -> None:
    assert Skew(sampled=200, disagreeing=0, max_difference=0.0, tolerance=1e-6).agrees
    assert not Skew(sampled=200, disagreeing=1, max_difference=0.1, tolerance=1e-6).agrees


def test_the_invariants_hold_unless_a_check_the_contract_makes_an_error_failed() -> None:
    def found(severity: str) -> Finding:
        return Finding(
            batch="2026-01-07 00:00",
            column="age",
            check="range",
            expected="[18, 90]",
            found="2 rows above",
            severity=severity,  # type: ignore[arg-type]
        )

    assert Invariants(rows=10, violations=(found("warning"),)).hold
    assert not Invariants(rows=10, violations=(found("warning"), found("error"))).hold


def test_a_versions_calibrators_are_fitted_once_and_only_from_its_evaluations_sample(
    reference: VersionReference,
) -> None:
    # given a binary version whose evaluation stored its scores and labels
    assert reference.evaluation is not None and reference.evaluation.scores_sample
    # then its resampled calibrators are fitted once and kept; it has no per-class ones
    calibrators = reference.score_calibrators
    assert calibrators is not None and len(calibrators) == 300
    assert reference.score_calibrators is calibrators
    assert reference.class_calibrators is None
    # and an evaluation without the sample gives none
    bare = reference.evaluation.model_copy(update={"scores_sample": ()})
    assert replace(reference, evaluation=bare).score_calibrators is None
