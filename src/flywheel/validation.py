"""Validation: every batch checked against a data contract (its findings and their report
are `flywheel.findings`).

pandera checks the structure (columns present and no others, types that
coerce, labels among the classes) and names each failing value. The statistical
checks (null rates, values out of range, unseen categories, label balance, PSI)
compare a whole batch with the reference profile, so they are computed here; all
but PSI flag a batch only on more exceedances than a healthy batch of its size
would show (`flywheel.bounds`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from flywheel import bounds, drift
from flywheel.config import ContractSettings, FeatureSettings
from flywheel.contract import (
    CategoricalProfile,
    Contract,
    ContractChange,
    NumericProfile,
    _few,
    class_counts,
)
from flywheel.findings import BatchCheck, Finding, Severity, ValidationResult
from flywheel.problem import Problem

log = logging.getLogger(__name__)


def _check_balance(
    add: Any, values: pd.Series, contract: Contract, policy: ContractSettings, level: float
) -> None:
    """A classifier's class shares against the contract's (binary: the positive rate): a
    finding when a share moved beyond the tolerance and further than a healthy batch of its
    size would (`bounds.balance_bounds`, each class at its share of `level`). A regression's
    label has no balance to keep (its drift is monitoring's)."""
    if contract.task == "regression":
        return
    if contract.class_fractions:
        counts = class_counts(values, contract.problem)
        expected = contract.class_fractions
        tested = [str(contract.classes[-1])] if contract.task == "binary" else list(counts)
        rows = sum(counts.values())
    else:  # a binary contract from before tasks
        numbers = pd.to_numeric(values, errors="coerce").dropna()
        counts, expected, tested = {"1": int(numbers.sum())}, {"1": contract.positive_rate}, ["1"]
        rows = len(numbers)
    if rows == 0:
        return
    tolerance = policy.label_balance_tolerance
    fired: list[tuple[float, str, str]] = []
    for name in tested:
        share = expected.get(name, 0.0)
        shift = counts[name] / rows - share
        if abs(shift) <= tolerance:
            continue
        more, fewer = bounds.balance_bounds(
            rows, round(share * contract.rows), contract.rows, level / len(tested)
        )
        if shift > 0 and more.blocks(counts[name]):
            bound = f"at most {more.limit} of {rows} (more has p < {more.level:.2g})"
        elif shift < 0 and fewer.blocks(rows - counts[name]):
            bound = f"at least {rows - fewer.limit} of {rows} (fewer has p < {fewer.level:.2g})"
        else:
            continue
        what = "positive rate" if contract.task == "binary" else f"share of class {name}"
        fired.append((abs(shift), name, f"{what} {share:.1%} ± {tolerance:.0%}, {bound}"))
    if fired:
        _, name, bound = max(fired)
        severity: Severity = "error" if policy.label_balance == "error" else "warning"
        add(contract.label, "label balance", bound, _count(counts[name], rows), severity)


def _label_column(problem: Problem | None) -> Any:
    """pandera's check of the label: a number for a regression, one of the classes for a
    classifier (whole numbers coerce to int64), present for a problem not yet known."""
    import pandera.pandas as pa

    if problem is None:
        return pa.Column(nullable=False)
    if not problem.is_classifier:
        return pa.Column("float64", coerce=True, nullable=False)
    classes = list(problem.classes)
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return pa.Column("int64", coerce=True, nullable=False, checks=pa.Check.isin(classes))
    return pa.Column(nullable=False, checks=pa.Check.isin(classes))


def _schema(
    time_column: str,
    label: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    passthrough: Sequence[str] = (),
    problem: Problem | None = None,
) -> Any:
    """pandera's view of a batch: exactly these columns (and, if present, the passthrough
    ones), types that coerce, the label's classes. Unseen categories are counted against a
    bound instead (`_check_categories`)."""
    import pandera.pandas as pa

    columns: dict[str, Any] = {
        time_column: pa.Column("datetime64[ns]", coerce=True, nullable=False),
        label: _label_column(problem),
    }
    for name in numeric:
        columns[name] = pa.Column("float64", coerce=True, nullable=True)
    for name in categorical:
        columns[name] = pa.Column(nullable=True)
    for name in passthrough:
        columns.setdefault(name, pa.Column(nullable=True, required=False))
    return pa.DataFrameSchema(columns, strict=True)


def _structure_findings(
    frame: pd.DataFrame, schema: Any, numeric: Sequence[str], batch: str, label: str = ""
) -> list[Finding]:
    import pandera.errors

    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return []
    findings: list[Finding] = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        samples = [str(v) for v in pd.unique(group["failure_case"].astype(str))]
        if check == "column_in_dataframe":
            findings += [_error(batch, c, "column present", "present", "missing") for c in samples]
        elif check == "column_in_schema":
            findings += [
                _error(batch, c, "no unexpected columns", "absent", "present, not in the contract")
                for c in samples
            ]
        elif any(f.column == column and f.check == "type" for f in findings):
            continue
        elif str(check).startswith(("coerce_dtype", "dtype")) and column in numeric:
            findings.append(
                _error(batch, str(column), "type", "numeric", _not_numbers(frame[column]))
            )
        elif str(check).startswith(("coerce_dtype", "dtype")):
            kind = str(check).split("'")[1]
            findings.append(
                _error(
                    batch, str(column), "type", kind, f"{len(group)} value(s) like {_few(samples)}"
                )
            )
        elif str(check).startswith("isin") and column == label:
            findings.append(
                _error(
                    batch,
                    str(column),
                    "classes",
                    "a class seen in training",
                    f"unseen class(es): {_few(samples)}",
                )
            )
        else:
            findings.append(
                _error(batch, str(column), str(check), "passes", f"failed for {_few(samples)}")
            )
    return findings


def structure_findings(
    frame: pd.DataFrame, features: FeatureSettings, batch: str, passthrough: Sequence[str] = ()
) -> list[Finding]:
    """Structural problems against the configured columns alone (no reference data needed)."""
    schema = _schema(
        features.time_column,
        features.label,
        features.numeric,
        features.categorical,
        passthrough,
    )
    return _structure_findings(frame, schema, features.numeric, batch, features.label)


def passthrough(policy: ContractSettings, features: FeatureSettings) -> tuple[str, ...]:
    """The tagged columns that are not features, label or time: allowed, not profiled."""
    taken = {*features.columns, features.label, features.time_column}
    return tuple(name for name in policy.columns if name not in taken)


def source_findings(columns: Sequence[str], policy: ContractSettings, batch: str) -> list[Finding]:
    """With allowed sources set, every column of a batch needs a source tag among them."""
    if not policy.allowed_sources:
        return []
    expected = f"a source among {', '.join(policy.allowed_sources)}"
    findings = []
    for name in columns:
        tags = policy.columns.get(name)
        source = tags.source if tags is not None else None
        if source not in policy.allowed_sources:
            found = f"source {source}" if source else "no source tag"
            findings.append(_error(batch, name, "source", expected, found))
    return findings


def clean_history(
    history: Sequence[tuple[str, pd.DataFrame]],
    features: FeatureSettings,
    passthrough: Sequence[str] = (),
) -> list[tuple[str, pd.DataFrame]]:
    """The training batches whose structure matches the configuration (the rest are logged)."""
    usable = []
    for name, frame in history:
        problems = structure_findings(frame, features, name, passthrough)
        if problems:
            log.warning(
                "batch %s is left out of the reference profile (%d structural problems)",
                name,
                len(problems),
            )
        else:
            usable.append((name, frame))
    return usable


def _not_numbers(values: pd.Series) -> str:
    """How much of a column that should be numeric is not, with an example."""
    bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
    count = int(bad.sum())
    example = str(values[bad].iloc[0]) if count else ""
    return f"{count} of {len(values)} values ({count / len(values):.1%}) are not numbers, e.g. {example!r}"


def _error(batch: str, column: str | None, check: str, expected: str, found: str) -> Finding:
    return Finding(
        batch=batch, column=column, check=check, expected=expected, found=found, severity="error"
    )


def _conforms(frame: pd.DataFrame, contract: Contract, passthrough: Sequence[str]) -> bool:
    """True when pandera's structural check (`_schema`) surely finds nothing: the contract's
    columns and no others, already of their types, no missing time or label, every label a
    class. Monitoring checks rows typed by the contract at every look, and pandera's import
    and checks were most of that check's time; anything else is left to pandera."""
    required = {contract.time_column, contract.label, *contract.numeric, *contract.categorical}
    present = set(frame.columns)
    if not required <= present or not present <= required | set(passthrough):
        return False
    time, label = frame[contract.time_column], frame[contract.label]
    if not pd.api.types.is_datetime64_dtype(time) or time.isna().any() or label.isna().any():
        return False
    if any(frame[name].dtype != np.float64 for name in contract.numeric):
        return False
    problem = contract.problem
    if not problem.is_classifier:
        return bool(label.dtype == np.float64)
    classes = list(problem.classes)
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return bool(label.dtype == np.int64 and label.isin(classes).all())
    return bool(label.isin(classes).all())


def check_batch(
    frame: pd.DataFrame,
    contract: Contract,
    policy: ContractSettings,
    batch: str,
    columns: Sequence[str] | None = None,
) -> BatchCheck:
    """Every structural and statistical check of one batch against a contract.

    `columns` are the batch's columns as delivered, before ingest dropped its pii
    (default: the frame's), for the source check.
    """
    passthrough = [
        *contract.passthrough,
        *(n for n in policy.columns if n not in contract.features),
    ]
    findings = []
    if not _conforms(frame, contract, passthrough):
        schema = _schema(
            contract.time_column,
            contract.label,
            list(contract.numeric),
            list(contract.categorical),
            passthrough,
            contract.problem,
        )
        findings = _structure_findings(frame, schema, list(contract.numeric), batch, contract.label)
    findings += source_findings(list(frame.columns) if columns is None else columns, policy, batch)
    broken = {f.column for f in findings if f.severity == "error"}

    def add(column: str | None, check: str, expected: str, found: str, severity: Severity) -> None:
        findings.append(
            Finding(
                batch=batch,
                column=column,
                check=check,
                expected=expected,
                found=found,
                severity=severity,
            )
        )

    if len(frame) < policy.min_rows:
        add(None, "rows", f">= {policy.min_rows}", str(len(frame)), "error")
    psi: dict[str, float] = {}
    pii = {n for n, tags in {**contract.columns, **policy.columns}.items() if tags.pii}
    balance = contract.task != "regression" and policy.label_balance == "error"
    level = bounds.check_level(policy.false_block_rate, len(contract.features), balance)
    for name, numeric in contract.numeric.items():
        if name not in frame.columns or name in broken:
            continue
        values = pd.to_numeric(frame[name], errors="coerce")
        _check_nulls(add, name, values, numeric.null_rate, contract.rows, policy, level)
        clean = values.dropna()
        _check_range(add, name, clean, numeric, contract.rows, policy, level)
        psi[name] = drift.psi(numeric.fractions, drift.bin_fractions(clean, numeric.edges))
    for name, categorical in contract.categorical.items():
        if name not in frame.columns or name in broken:
            continue
        _check_nulls(add, name, frame[name], categorical.null_rate, contract.rows, policy, level)
        _check_categories(
            add, name, frame[name], categorical, contract.rows, policy, level, name in pii
        )
        psi[name] = drift.categorical_psi(
            categorical.fractions, drift.category_fractions(frame[name])
        )
    if contract.label in frame.columns and contract.label not in broken:
        _check_balance(add, frame[contract.label], contract, policy, level)
    for name, value in psi.items():
        limit = policy.drift.psi_fail
        if limit is not None and value > limit:
            add(name, "drift (PSI)", f"<= {limit}", f"{value:.3f}", "error")
        elif value > policy.drift.psi_warn:
            add(name, "drift (PSI)", f"<= {policy.drift.psi_warn}", f"{value:.3f}", "warning")
    findings = [
        f.model_copy(update={"found": "values not shown: a pii column"})
        if f.column in pii and f.check == "type"
        else f
        for f in findings
    ]
    return BatchCheck(batch=batch, rows=len(frame), findings=tuple(findings), psi=psi)


def _check_nulls(
    add: Any,
    name: str,
    values: pd.Series,
    reference: float,
    reference_rows: int,
    policy: ContractSettings,
    level: float,
) -> None:
    nulls = int(values.isna().sum())
    bound = bounds.null_bound(
        len(values),
        round(reference * reference_rows),
        reference_rows,
        policy.null_rate_tolerance,
        level,
    )
    if bound.blocks(nulls):
        add(name, "null rate", bound.describe("null"), _count(nulls, len(values)), "error")


def _check_range(
    add: Any,
    name: str,
    clean: pd.Series,
    profile: NumericProfile,
    reference_rows: int,
    policy: ContractSettings,
    level: float,
) -> None:
    slack = policy.range_tolerance * (profile.max - profile.min)
    low, high = profile.min - slack, profile.max + slack
    outside = int(((clean < low) | (clean > high)).sum())
    bound = bounds.range_bound(
        len(clean),
        round((1 - profile.null_rate) * reference_rows),
        policy.max_out_of_range_fraction,
        level,
    )
    if bound.blocks(outside):
        what = f"outside [{low:.4g}, {high:.4g}]"
        add(name, "range", bound.describe(what), f"{_count(outside, len(clean))} outside", "error")


def _check_categories(
    add: Any,
    name: str,
    values: pd.Series,
    profile: CategoricalProfile,
    reference_rows: int,
    policy: ContractSettings,
    level: float,
    pii: bool,
) -> None:
    """Unseen categories: an error when more than a healthy batch would show and the policy
    says so, else a warning; either names them, unless the column is pii."""
    text = values.dropna().astype(str)
    unseen = text[~text.isin(list(profile.fractions))]
    if unseen.empty:
        return
    seen_rows = (1 - profile.null_rate) * reference_rows
    counts = [round(share * seen_rows) for share in profile.fractions.values()]
    bound = bounds.unseen_bound(
        len(text), counts.count(1), counts.count(2), round(seen_rows), level
    )
    shown = "values not shown: a pii column" if pii else _few(sorted({str(v) for v in unseen}))
    found = f"{_count(len(unseen), len(text))} unseen: {shown}"
    if policy.unseen_categories == "error" and bound.blocks(len(unseen)):
        add(name, "allowed values", bound.describe("unseen in training"), found, "error")
    else:
        add(name, "allowed categories", "a category seen in training", found, "warning")


def _count(count: int, rows: int) -> str:
    share = count / rows if rows else 0.0
    return f"{count} of {rows} ({share:.1%})"


def skew(
    reference: pd.DataFrame, current: pd.DataFrame, contract: Contract
) -> dict[str, dict[str, float]]:
    """Train/serve skew per numeric feature: KS statistic and p-value."""
    result: dict[str, dict[str, float]] = {}
    for name in contract.numeric:
        if name in reference.columns and name in current.columns:
            ks, p = drift.ks_statistic(reference[name], current[name])
            if not np.isnan(ks):
                result[name] = {"ks": ks, "p": p}
    return result


def validate_window(
    batches: Sequence[tuple[str, pd.DataFrame]],
    contract: Contract,
    policy: ContractSettings,
    reference: str,
    train: pd.DataFrame | None = None,
    columns: dict[str, Sequence[str]] | None = None,
    changes: tuple[ContractChange, ...] | None = None,
) -> ValidationResult:
    """Check every batch of a window; skew compares `train` with the newest batch.

    `columns` are each batch's columns as delivered (by batch name), for the source check;
    `changes` are the contract's changes against production's, for the report.
    """
    delivered = columns or {}
    checks = tuple(
        check_batch(frame, contract, policy, name, delivered.get(name)) for name, frame in batches
    )
    skews = skew(train, batches[-1][1], contract) if train is not None and batches else {}
    return ValidationResult(reference=reference, batches=checks, skew=skews, changes=changes)
