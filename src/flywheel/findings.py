"""A batch's findings against its contract, and the validation report.

`flywheel.validation` checks each batch and records what it finds as `Finding`s, one
`BatchCheck` per batch; a `ValidationResult` holds a window's, with the skew of its newest
batch and the contract's changes against production's, and writes them out for a person (the
Markdown report the Kubeflow UI shows) and for logs. A run stops on a `ContractViolation`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flywheel.contract import ContractChange
from flywheel.errors import FlywheelError
from flywheel.records import Record

Severity = Literal["error", "warning"]


class Finding(Record):
    """One failed or suspicious check on one column of one batch."""

    batch: str
    column: str | None
    check: str
    expected: str
    found: str
    severity: Severity


class BatchCheck(Record):
    """All findings for one batch, and its drift against the reference."""

    batch: str
    rows: int
    findings: tuple[Finding, ...]
    psi: dict[str, float]


class ValidationResult(Record):
    """The outcome of checking every batch of a window against a contract."""

    reference: str
    batches: tuple[BatchCheck, ...]
    skew: dict[str, dict[str, float]] = Field(default_factory=dict)
    # Against production's contract; None when there is none to compare with.
    changes: tuple[ContractChange, ...] | None = None

    @property
    def errors(self) -> list[Finding]:
        """Findings that stop the run."""
        return [f for b in self.batches for f in b.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """Findings worth a look that do not stop the run."""
        return [f for b in self.batches for f in b.findings if f.severity == "warning"]

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return not self.errors

    def summary(self) -> str:
        """One line per error, for logs and exception messages."""
        return "\n".join(
            f"batch {f.batch}: column {f.column or '(table)'}: {f.check}: "
            f"expected {f.expected}, found {f.found}"
            for f in self.errors
        )

    def markdown(self) -> str:
        """A report a person can read in the Kubeflow UI."""
        status = "PASSED" if self.passed else "FAILED"
        lines = [
            f"# Data validation: {status}",
            "",
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s) "
            f"across {len(self.batches)} batch(es). Reference: {self.reference}.",
            "",
        ]
        for title, items in (("Errors", self.errors), ("Warnings", self.warnings)):
            if not items:
                continue
            lines += [f"## {title}", "", "| batch | column | check | expected | found |"]
            lines.append("|---|---|---|---|---|")
            lines += [
                f"| {f.batch} | {f.column or '(table)'} | {f.check} | {_cell(f.expected)} "
                f"| {_cell(f.found)} |"
                for f in items
            ]
            lines.append("")
        if self.batches and self.batches[-1].psi:
            newest = self.batches[-1]
            lines += [
                f"## Drift of the newest batch ({newest.batch}) against the reference",
                "",
                "| feature | PSI | KS (train vs newest) | KS p-value |",
                "|---|---|---|---|",
            ]
            for name, value in newest.psi.items():
                skew = self.skew.get(name, {})
                ks = f"{skew['ks']:.3f}" if "ks" in skew else "–"
                p = f"{skew['p']:.3g}" if "p" in skew else "–"
                lines.append(f"| {name} | {value:.3f} | {ks} | {p} |")
            lines.append("")
        if self.changes is not None:
            lines += ["## Contract changes", ""]
            if self.changes:
                lines += [
                    "This run's contract against production's:",
                    "",
                    "| column | change | production | this run |",
                    "|---|---|---|---|",
                ]
                lines += [
                    f"| {c.column} | {c.change} | {_cell(c.production)} | {_cell(c.candidate)} |"
                    for c in self.changes
                ]
            else:
                lines.append("None: the same columns, types and tags as production's contract.")
            lines.append("")
        lines += ["## Batches", "", "| batch | rows | errors | warnings |", "|---|---|---|---|"]
        for b in self.batches:
            errors = sum(f.severity == "error" for f in b.findings)
            lines.append(f"| {b.batch} | {b.rows} | {errors} | {len(b.findings) - errors} |")
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class ContractViolation(FlywheelError, ValueError):
    """A batch broke the data contract; the message lists every failing check."""

    def __init__(self, result: ValidationResult) -> None:
        self.result = result
        super().__init__(
            f"data contract violated ({len(result.errors)} error(s)):\n{result.summary()}"
        )
