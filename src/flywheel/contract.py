"""Data contracts: inferred from reference data, stored with each model, diffed against
production's. Every batch is checked against one in `flywheel.validation`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from flywheel import drift
from flywheel.config import ColumnTags, ContractSettings, FeatureSettings, Task
from flywheel.problem import Label, Problem
from flywheel.records import Record

if TYPE_CHECKING:
    import pandas as pd


class NumericProfile(Record):
    """What a numeric feature looked like in the reference data."""

    null_rate: float
    min: float
    max: float
    mean: float
    std: float
    edges: tuple[float, ...]
    fractions: tuple[float, ...]


class CategoricalProfile(Record):
    """The categories seen in the reference data and their shares."""

    null_rate: float
    fractions: dict[str, float]


class Contract(Record):
    """Schema and statistics of the data a model was trained on."""

    format: Literal[1] = 1
    time_column: str
    label: str
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    # The problem the label makes: its task and, for a classifier, the class set in the order
    # of the model's classes_ (a contract from before tasks was a binary 0/1 one).
    task: Task = "binary"
    classes: tuple[Label, ...] = (0, 1)
    # The share of classes[1] (binary); of each class (by its str), or the label's profile.
    positive_rate: float
    class_fractions: dict[str, float] = Field(default={})
    label_profile: NumericProfile | None = None
    rows: int
    batches: tuple[str, ...]
    # The configuration's tags and allowed sources when it was profiled, versioned with it.
    columns: dict[str, ColumnTags] = Field(default={})
    allowed_sources: tuple[str, ...] = ()

    @property
    def features(self) -> tuple[str, ...]:
        """Feature columns in model input order."""
        return (*self.numeric, *self.categorical)

    @property
    def problem(self) -> Problem:
        """The task and classes this contract fixes."""
        return Problem(task=self.task, label=self.label, classes=self.classes)

    @property
    def passthrough(self) -> tuple[str, ...]:
        """Tagged columns that are not features: batches may carry them, unprofiled."""
        taken = {*self.features, self.label, self.time_column}
        return tuple(name for name in self.columns if name not in taken)

    def describe(self, name: str, pii: bool = False) -> str:
        """A column's type and profile in a few words; no values of a column this contract
        tags pii, or of one another contract does (`pii`)."""
        pii = pii or self.columns.get(name, ColumnTags()).pii
        if name in self.numeric:
            p = self.numeric[name]
            if pii:
                return f"numeric, nulls {p.null_rate:.1%} (pii: range not shown)"
            return f"numeric, {p.min:.4g}..{p.max:.4g}, nulls {p.null_rate:.1%}"
        if name in self.categorical:
            fractions = self.categorical[name].fractions
            if pii:
                return f"categorical, {len(fractions)} categories (pii: not shown)"
            return f"categorical, {len(fractions)} categories: {_few(sorted(fractions))}"
        return "not a feature"

    def typical_row(self) -> dict[str, Any]:
        """One made-up row of typical values: each numeric mean, each most common category."""
        row: dict[str, Any] = {n: round(p.mean, 2) for n, p in self.numeric.items()}
        row.update(
            {n: max(p.fractions, key=p.fractions.__getitem__) for n, p in self.categorical.items()}
        )
        return row

    def to_json(self) -> str:
        """Serialise for storage next to the model."""
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Contract:
        """Load a contract written by `to_json`."""
        return cls.model_validate_json(text)


def numeric_profile(values: pd.Series, bins: int) -> NumericProfile:
    """A numeric column's nulls, range, moments and quantile bins."""
    clean = values.dropna()
    edges = drift.quantile_edges(clean, bins)
    return NumericProfile(
        null_rate=float(values.isna().mean()),
        min=float(clean.min()),
        max=float(clean.max()),
        mean=float(clean.mean()),
        std=float(clean.std(ddof=0)),
        edges=tuple(edges),
        fractions=tuple(drift.bin_fractions(clean, edges)),
    )


def class_counts(values: pd.Series, problem: Problem) -> dict[str, int]:
    """Each class's count in a classifier's label column, by the class's str."""
    codes = problem.codes(values.dropna())
    return {str(c): int((codes == i).sum()) for i, c in enumerate(problem.classes)}


def class_shares(values: pd.Series, problem: Problem) -> dict[str, float]:
    """Each class's share of a classifier's label column, by the class's str."""
    counts = class_counts(values, problem)
    n = max(sum(counts.values()), 1)
    return {c: count / n for c, count in counts.items()}


def infer_contract(
    frames: Sequence[tuple[str, pd.DataFrame]],
    features: FeatureSettings,
    bins: int,
    policy: ContractSettings | None = None,
    problem: Problem | None = None,
) -> Contract:
    """Profile clean reference batches into a contract, with the policy's column tags and the
    label's problem (default: a binary 0/1 one)."""
    import pandas as pd

    data = pd.concat([frame for _, frame in frames], ignore_index=True)
    problem = problem or Problem(task="binary", label=features.label, classes=(0, 1))
    numeric = {
        name: numeric_profile(pd.to_numeric(data[name], errors="coerce"), bins)
        for name in features.numeric
    }
    categorical = {
        name: CategoricalProfile(
            null_rate=float(data[name].isna().mean()),
            fractions=drift.category_fractions(data[name]),
        )
        for name in features.categorical
    }
    label = data[features.label]
    shares = class_shares(label, problem) if problem.is_classifier else {}
    return Contract(
        time_column=features.time_column,
        label=features.label,
        numeric=numeric,
        categorical=categorical,
        task=problem.task,
        classes=problem.classes,
        positive_rate=shares.get(str(problem.classes[-1]), 0.0)
        if problem.task == "binary"
        else 0.0,
        class_fractions=shares,
        label_profile=None
        if problem.is_classifier
        else numeric_profile(problem_targets(label), bins),
        rows=len(data),
        batches=tuple(name for name, _ in frames),
        columns=dict(policy.columns) if policy else {},
        allowed_sources=policy.allowed_sources if policy else (),
    )


class ContractChange(Record):
    """One column whose place in the contract differs from production's."""

    column: str
    change: Literal["added", "removed", "type", "tags", "classes"]
    production: str
    candidate: str


def _tag_text(tags: ColumnTags | None) -> str:
    if tags is None:
        return "untagged"
    words = [w for w, on in (("pii", tags.pii), ("sensitive", tags.sensitive)) if on]
    if tags.source:
        words.append(f"source {tags.source}")
    return ", ".join(words) or "untagged"


def diff(production: Contract, candidate: Contract) -> tuple[ContractChange, ...]:
    """What this run's contract changes of production's: columns added or removed, a type
    changed, tags changed."""

    def kind(contract: Contract, name: str) -> str | None:
        if name in contract.numeric:
            return "numeric"
        return "categorical" if name in contract.categorical else None

    # A column either contract tags pii shows no values from either (production's may
    # predate the tag).
    pii = {n for c in (production, candidate) for n, tags in c.columns.items() if tags.pii}

    def describe(contract: Contract, name: str) -> str:
        return contract.describe(name, pii=name in pii)

    changes: list[ContractChange] = []
    names = dict.fromkeys([*production.features, *candidate.features])
    for name in names:
        before, after = kind(production, name), kind(candidate, name)
        if before is None:
            changes.append(
                ContractChange(
                    column=name, change="added", production="–", candidate=describe(candidate, name)
                )
            )
        elif after is None:
            changes.append(
                ContractChange(
                    column=name,
                    change="removed",
                    production=describe(production, name),
                    candidate="–",
                )
            )
        elif before != after:
            changes.append(
                ContractChange(
                    column=name,
                    change="type",
                    production=describe(production, name),
                    candidate=describe(candidate, name),
                )
            )
    if (production.task, production.classes) != (candidate.task, candidate.classes):
        changes.append(
            ContractChange(
                column=candidate.label,
                change="classes",
                production=production.problem.describe(),
                candidate=candidate.problem.describe(),
            )
        )
    for name in dict.fromkeys([*production.columns, *candidate.columns]):
        before_tags, after_tags = production.columns.get(name), candidate.columns.get(name)
        if _tag_text(before_tags) != _tag_text(after_tags):
            changes.append(
                ContractChange(
                    column=name,
                    change="tags",
                    production=_tag_text(before_tags),
                    candidate=_tag_text(after_tags),
                )
            )
    return tuple(changes)


def announce(production: Contract, candidate: Contract) -> Contract:
    """Production's contract with the configuration's feature changes announced: a feature
    production lacks (or now of another type) is checked against this window's own profile,
    and one no longer configured is no longer required, so adding or removing a feature in
    `features:` is a change the report shows, not a violation."""
    numeric = {n: production.numeric.get(n, p) for n, p in candidate.numeric.items()}
    categorical = {n: production.categorical.get(n, p) for n, p in candidate.categorical.items()}
    removed = [n for n in production.features if n not in candidate.features]
    columns = {
        **candidate.columns,
        **{n: ColumnTags() for n in removed if n not in candidate.columns},
    }
    # The classes are this window's: a class production never saw is a change the report
    # shows, and the newest batch is held to the classes the candidate is trained on.
    shares = {**candidate.class_fractions, **production.class_fractions}
    return production.model_copy(
        update={
            "numeric": numeric,
            "categorical": categorical,
            "columns": columns,
            "task": candidate.task,
            "classes": candidate.classes,
            "class_fractions": {c: shares[c] for c in candidate.class_fractions},
            "label_profile": candidate.label_profile,
        }
    )


def keep_label_bins(production: Contract, candidate: Contract, values: pd.Series) -> Contract:
    """The candidate's contract with a regression label's bins kept from production's: its
    profile of `values` on production's edges. Serving counts predicted values in them, and
    a canary compares the two versions' counts, so every version of a model bins alike."""
    kept = production.label_profile
    if candidate.task != "regression" or production.task != "regression" or kept is None:
        return candidate
    targets = problem_targets(values)
    profile = numeric_profile(targets, 1).model_copy(
        update={"edges": kept.edges, "fractions": tuple(drift.bin_fractions(targets, kept.edges))}
    )
    return candidate.model_copy(update={"label_profile": profile})


def problem_targets(values: pd.Series) -> pd.Series:
    """A regression label as floats."""
    import pandas as pd

    return pd.to_numeric(values, errors="coerce").astype("float64")


def _few(samples: Sequence[str], limit: int = 5) -> str:
    extra = f" (+{len(samples) - limit} more)" if len(samples) > limit else ""
    return ", ".join(samples[:limit]) + extra
