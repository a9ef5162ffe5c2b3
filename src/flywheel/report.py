"""Self-contained HTML reports with embedded plots, for the Kubeflow UI and the registry."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flywheel.evaluation import Curve, Evaluation, FeatureImportance, ModelEvaluation

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.5em}figcaption{font-size:.9em;color:#555}
"""


def number(value: float | None) -> str:
    """A metric for a table cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}"


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5, 4), dpi=90)


# What encode_figure writes: PNG for the self-contained HTML reports; the UI draws the same
# figures as SVG (`figures_as`).
_format: ContextVar[str] = ContextVar("figure_format", default="png")


@contextmanager
def figures_as(fmt: str) -> Iterator[None]:
    """Encode the figures drawn in this block (this thread) as `fmt`: "png" or "svg"."""
    token = _format.set(fmt)
    try:
        yield
    finally:
        _format.reset(token)


def encode_figure(fig: Any, ax: Any = None, *, dates: bool = False) -> str:
    """The figure as base64 (PNG, or SVG under `figures_as("svg")`), closed after. With `ax`,
    a small legend of its labelled lines (if any); with `dates`, x labels slanted to fit
    dates."""
    import matplotlib.pyplot as plt

    if ax is not None and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    if dates:
        fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=_format.get())
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def roc_figure(curves: Sequence[tuple[str, Curve]]) -> str:
    """ROC curves of several models on one plot."""
    fig, ax = _figure()
    for name, curve in curves:
        ax.plot(curve.fpr, curve.tpr, label=name)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    return encode_figure(fig)


def calibration_figure(points: Sequence[tuple[str, Sequence[tuple[float, float]]]]) -> str:
    """Reliability diagram: predicted probability against the observed rate."""
    fig, ax = _figure()
    for name, pairs in points:
        ax.plot([p for p, _ in pairs], [o for _, o in pairs], marker="o", label=name)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed rate",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    return encode_figure(fig)


def residual_figure(models: Sequence[tuple[str, ModelEvaluation]]) -> str:
    """A regression's predicted against actual values, and its residuals against predicted."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=90)
    for name, model in models:
        predicted = [p for p, _ in model.predicted_actual]
        actual = [a for _, a in model.predicted_actual]
        left.scatter(actual, predicted, s=6, alpha=0.5, label=name)
        right.scatter(predicted, [a - p for p, a in model.predicted_actual], s=6, alpha=0.5)
    every = [v for _, m in models for pair in m.predicted_actual for v in pair] or [0.0, 1.0]
    low, high = min(every), max(every)
    left.plot([low, high], [low, high], linestyle=":", color="grey")
    left.set(xlabel="actual", ylabel="predicted")
    left.legend(loc="upper left", fontsize=7)
    right.axhline(0.0, linestyle=":", color="grey")
    right.set(xlabel="predicted", ylabel="actual - predicted")
    return encode_figure(fig)


def slice_figure(models: Sequence[tuple[str, ModelEvaluation]], metric: str) -> str:
    """The metric per categorical value, one bar per model."""
    fig, ax = _figure()
    labels = [f"{col}={val}" for col, values in models[0][1].slices.items() for val in values]
    width = 0.8 / len(models)
    for i, (name, model) in enumerate(models):
        heights = [_slice_value(model, *label.split("=", 1)) for label in labels]
        ax.barh([y + i * width for y in range(len(labels))], heights, height=width, label=name)
    ax.set_yticks(
        [y + width * (len(models) - 1) / 2 for y in range(len(labels))], labels, fontsize=7
    )
    if metric in ("roc_auc", "accuracy", "balanced_accuracy"):
        ax.set(xlim=(0.5, 1.0))
    ax.set(xlabel=metric)
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=7)
    return encode_figure(fig)


def _slice_value(model: ModelEvaluation, column: str, value: str) -> float:
    found = model.slices.get(column, {}).get(value)
    return found.value if found is not None and found.value is not None else 0.0


def confusion_figure(
    models: Sequence[tuple[str, ModelEvaluation]], classes: Sequence[str] = ("0", "1")
) -> str:
    """N x N confusion matrices side by side, actual by predicted."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.5), dpi=90, squeeze=False)
    for ax, (name, model) in zip(axes[0], models, strict=True):
        matrix = model.newest.confusion
        k = len(matrix)
        ax.imshow(matrix, cmap="Blues")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=8)
        ticks = list(range(k))
        names = list(classes)[:k] if len(classes) >= k else [str(t) for t in ticks]
        ax.set_xticks(ticks, names, fontsize=7)
        ax.set_yticks(ticks, names, fontsize=7)
        ax.set(title=name, xlabel="predicted", ylabel="actual")
    return encode_figure(fig)


def importance_figure(importance: Mapping[str, FeatureImportance]) -> str:
    """Each feature's permutation importance with its interval, largest first.

    Bars are grey where the interval reaches zero, red where such a feature is also costly.
    """
    fig, ax = _figure()
    names = sorted(importance, key=lambda n: importance[n].mean, reverse=True)
    means = [importance[n].mean for n in names]
    errors = [
        [importance[n].mean - importance[n].low for n in names],
        [importance[n].high - importance[n].mean for n in names],
    ]
    colours = [_colour(importance, n) for n in names]
    ax.barh(range(len(names)), means, xerr=errors, color=colours, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="drop in the metric when shuffled (t interval)")
    ax.invert_yaxis()
    return encode_figure(fig)


def costly(importance: Mapping[str, FeatureImportance], name: str) -> bool:
    """At least twice an equal share of preprocessing time, scoring work or memory.

    Twice, so that the timing noise around an equal share does not mark half the features.
    """
    twice = 2 / len(importance)
    memory = sum(m.bytes_per_row for m in importance.values()) or 1.0
    measured = importance[name]
    return (
        max(measured.preprocess_share, measured.scoring_share, measured.bytes_per_row / memory)
        >= twice
    )


def _colour(importance: Mapping[str, FeatureImportance], name: str) -> str:
    if importance[name].matters:
        return "tab:blue"
    return "tab:red" if costly(importance, name) else "tab:grey"


def importance_rows(importance: Mapping[str, FeatureImportance]) -> list[tuple[str, ...]]:
    """Importance beside cost, one row per feature, largest importance first."""
    rows: list[tuple[str, ...]] = []
    for name in sorted(importance, key=lambda n: importance[n].mean, reverse=True):
        m = importance[name]
        if m.matters:
            note = ""
        elif costly(importance, name):
            note = "COSTLY, ADDS NOTHING"
        else:
            note = "adds nothing"
        rows.append(
            (
                name,
                f"{m.mean:+.4f}",
                f"[{m.low:+.4f}, {m.high:+.4f}]",
                f"{m.preprocess_us_per_row:.2f}",
                f"{m.preprocess_share:.1%}",
                f"{m.scoring_share:.1%}",
                f"{m.bytes_per_row:.1f}",
                note,
            )
        )
    return rows


IMPORTANCE_HEAD = (
    "feature",
    "importance",
    "interval",
    "preprocessing µs/row",
    "preprocessing share",
    "scoring share",
    "bytes/row",
    "",
)


def _table(table: tuple[Sequence[str], Sequence[Sequence[str]]]) -> str:
    head, rows = table
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def html_page(
    title: str,
    *,
    intro: str,
    table: tuple[Sequence[str], Sequence[Sequence[str]]],
    figures: Sequence[tuple[str, str]],
    sections: Sequence[tuple[str, str, tuple[Sequence[str], Sequence[Sequence[str]]]]] = (),
    image: str = "image/png",
) -> str:
    """Assemble the page; each of `sections` is a heading, a paragraph and a table; the
    figures are base64 of `image` (a media type)."""
    extra = "".join(
        f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>{_table(rows)}"
        for heading, text, rows in sections
    )
    images = "".join(
        f'<figure><img alt="{html.escape(caption)}" src="data:{image};base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, data in figures
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(intro)}</p>{_table(table)}{extra}{images}</body></html>"
    )


# The metrics each task's page lists, the gate's marked.
METRIC_ROWS: dict[str, tuple[str, ...]] = {
    "binary": (
        "roc_auc",
        "average_precision",
        "accuracy",
        "balanced_accuracy",
        "f1",
        "log_loss",
        "brier",
    ),
    "multiclass": (
        "roc_auc",
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "weighted_f1",
        "log_loss",
    ),
    "regression": ("rmse", "mae", "r2", "mape", "mean_label", "mean_prediction"),
}


def _label_summary(evaluation: Evaluation) -> str:
    c = evaluation.candidate.newest
    if evaluation.task == "binary" and c.positive_rate is not None:
        return f"positive rate {c.positive_rate:.1%}. "
    if evaluation.task == "multiclass":
        return f"{len(evaluation.classes)} classes. "
    return f"mean label {number(c.mean_label)}. "


def task_figures(
    evaluation: Evaluation, models: Sequence[tuple[str, ModelEvaluation]]
) -> list[tuple[str, str]]:
    """The task's plots: a binary classifier's ROC, calibration and confusion; a multiclass
    one's per class, one against the rest, and its N x N confusion; a regression's predicted
    against actual values and residuals."""
    if evaluation.task == "regression":
        return [
            (
                "Predicted against actual, and residuals, on the newest batch",
                residual_figure(models),
            )
        ]
    confusion = (
        f"Confusion matrices on the newest batch ({'at 0.5' if evaluation.task == 'binary' else 'most probable class'})",
        confusion_figure(models, evaluation.classes or ("0", "1")),
    )
    if evaluation.task == "binary":
        return [
            ("ROC on the newest batch", roc_figure([(n, m.roc) for n, m in models if m.roc])),
            (
                "Calibration on the newest batch",
                calibration_figure([(n, m.calibration) for n, m in models]),
            ),
            confusion,
        ]
    candidate = evaluation.candidate
    return [
        (
            "ROC per class, one against the rest (candidate, newest batch)",
            roc_figure(sorted(candidate.roc_per_class.items())),
        ),
        (
            "Calibration per class, one against the rest (candidate, newest batch)",
            calibration_figure(sorted(candidate.calibration_per_class.items())),
        ),
        confusion,
    ]


def evaluation_page(evaluation: Evaluation, title: str) -> str:
    """The evaluation as a self-contained HTML page with the plots embedded as PNG."""
    c, prod = evaluation.candidate, evaluation.production
    metric = evaluation.metric
    rows: list[tuple[str, str, str, str]] = []
    for name in METRIC_ROWS[evaluation.task]:
        cand_new = getattr(c.newest, name)
        prod_new = getattr(prod.newest, name) if prod else None
        rows.append(
            (
                name + (" (gate)" if name == metric else ""),
                number(getattr(c.holdout, name) if c.holdout else None),
                number(cand_new),
                number(prod_new)
                + (
                    f" (Δ {cand_new - prod_new:+.4f})"
                    if prod_new is not None and cand_new is not None
                    else ""
                ),
            )
        )
    models: list[tuple[str, ModelEvaluation]] = [("candidate", c)]
    if prod:
        models.append((f"production {prod.version}", prod))
    figures = task_figures(evaluation, models)
    if any(c.slices.values()):
        figures.append((f"{metric} by slice on the newest batch", slice_figure(models, metric)))
    sections: list[tuple[str, str, tuple[Sequence[str], Sequence[Sequence[str]]]]] = []
    if c.newest.per_class:
        sections.append(
            (
                "Per class, one against the rest (candidate, newest batch)",
                "Precision, recall and F1 at the most probable class; ROC AUC of the class's "
                "probability.",
                (
                    ("class", "rows", "precision", "recall", "f1", "roc_auc"),
                    [
                        (
                            evaluation.classes[int(code)] if evaluation.classes else code,
                            str(one.support),
                            number(one.precision),
                            number(one.recall),
                            number(one.f1),
                            number(one.roc_auc),
                        )
                        for code, one in c.newest.per_class.items()
                    ],
                ),
            )
        )
    if c.importance:
        figures.append(
            (
                "Permutation importance on the holdout, with t intervals",
                importance_figure(c.importance),
            )
        )
        sections.append(
            (
                "What each feature adds, and what it costs",
                f"Measured: {c.importance_method or 'unknown'}. A feature whose interval "
                "reaches zero adds nothing measurable; marked costly when it takes at least "
                "twice an equal share of preprocessing time, scoring work or memory.",
                (IMPORTANCE_HEAD, importance_rows(c.importance)),
            )
        )
    return html_page(
        title,
        intro=(
            f"Newest batch {evaluation.newest_batch}: {c.newest.rows} rows, "
            + _label_summary(evaluation)
            + (
                "No model is in production yet."
                if prod is None
                else f"Production is {prod.version}."
            )
        ),
        table=(("metric", "candidate, holdout", "candidate, newest", "production, newest"), rows),
        figures=figures,
        sections=sections,
    )
