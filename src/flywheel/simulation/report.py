"""The report of a simulation: a terminal summary, an HTML page with plots, summary.json.

`write` puts `report.html` and `summary.json` in a folder; `terminal_summary` is the rich
table the CLI prints. The figures are `flywheel.simulation.scores`'.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from flywheel.report import encode_figure, html_page, number
from flywheel.simulation import scores
from flywheel.simulation.loop import Timeline

PAGE = "report.html"
SUMMARY = "summary.json"
# A fired decision's kind, from its reason's start (the trigger engine's wording).
KINDS = (
    ("schedule", "schedule"),
    ("new data", "new data"),
    ("drift", "drift"),
    ("performance drop", "performance"),
    ("estimated performance", "estimated performance"),
    ("code change", "code change"),
    ("forced: policy", "policy"),
    ("forced", "forced"),
)
STALENESS = (
    "The cost of staleness is the performance lost per day of model age: the least-squares "
    "slope, each day weighed by the rows it was judged on, of the daily gap between the "
    "oracle and production (oracle accuracy minus "
    "production accuracy; for a regression, production's mean absolute error minus the "
    "oracle's) against the age of the production model when the day began. Without an "
    "oracle it is the slope of production's worsening against that age. "
    "The oracle is the generator's own probabilities: on the rows production was judged on, "
    "the chance that the most probable label given the features is right (for a regression, "
    "the expected absolute error of the conditional median). No model of the features can "
    "expect better: it is an upper bound by construction."
)


def write(
    timeline: Timeline,
    out_dir: Path,
    *,
    oracle: Sequence[float | None] | None = None,
    floor: float | None = scores.DEFAULT_FLOOR,
) -> Path:
    """Write `report.html` and `summary.json` of `timeline` into `out_dir`; the page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = scores.summary(timeline, oracle, floor)
    _write(out_dir / SUMMARY, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    page = out_dir / PAGE
    _write(page, page_html(timeline, summary, oracle))
    return page


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def kind(reason: str) -> str:
    """What fired, in a word, from a decision's reason."""
    return next((name for start, name in KINDS if reason.startswith(start)), "other")


def terminal_summary(summary: dict[str, Any]) -> Table:
    """The figures of one simulation as a two-column table."""
    s = summary
    cost = s["staleness_cost"]
    rows = [
        ("simulation", f"{s['scenario']}, policy {s['policy']}, seed {s['seed']}"),
        (
            "days",
            f"{s['days']} (change on day {s['change_day']}, labels {s['label_delay']} days "
            f"late, {s['traffic']} rows a day)",
        ),
        (f"mean production {s['metric']}", number(s["mean_metric"])),
        ("oracle (the generator's probabilities)", _oracle(s)),
        ("days past the bound", _bound(s)),
        ("detection delay", _detection(s)),
        ("first blessed run after the change", _days_after(s, s.get("first_blessed_days"))),
        ("retrains", str(s["retrains"])),
        ("promotions / rollbacks", f"{s['promotions']} / {s['rollbacks']}"),
        ("blocked batches", str(s["blocked_batches"])),
        ("rows refused", _refused(s)),
        (
            "false triggers",
            "– (not the trigger policy)"
            if s["false_triggers"] is None
            else str(s["false_triggers"]),
        ),
        ("cost of staleness", _cost(cost)),
        ("wall time", f"{s['wall_seconds']:.0f}s"),
    ]
    table = Table(title="flywheel simulate", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    return table


def _detection(s: dict[str, Any]) -> str:
    if s["false_triggers"] is None:  # a policy that decides nothing from signals
        return "– (the policy does not decide from signals)"
    return _days_after(s, s["detection_delay_days"], "no blessed run a signal started")


def _days_after(
    s: dict[str, Any], days: int | None, never: str = "no blessed run after the change"
) -> str:
    if s["scenario"] == "stable":
        return "– (no change)"
    return never if days is None else f"{days} day(s)"


def _oracle(s: dict[str, Any]) -> str:
    if s["oracle_mean_metric"] is None:
        return "– (not computed)"
    gap = s["oracle_gap"]
    if gap is None:
        return number(s["oracle_mean_metric"])
    relation = "trails it by" if gap >= 0 else "is ahead of it by"
    return f"{number(s['oracle_mean_metric'])} (production {relation} {number(abs(gap))})"


def _bound(s: dict[str, Any]) -> str:
    if s["floor"] is None:
        return f"– (no bound on {s['metric']} in the configuration)"
    side = ">" if s["metric"] == "mae" else "<"
    return f"{s['days_below_floor']} ({s['metric']} {side} {s['floor']:g})"


def _refused(s: dict[str, Any]) -> str:
    if not s["refused_rows"]:
        return "0"
    return f"{s['refused_rows']} ({s['refused_share']:.1%} of the rows sent; {s['metric']} counts answered rows)"


def _cost(cost: dict[str, Any]) -> str:
    if cost["per_day"] is None:
        return f"– (too few days: {cost['points']})"
    return (
        f"{cost['per_day']:+.4f} {cost.get('metric', 'accuracy')} per day of model age "
        f"({cost['from']}, {cost['points']} days)"
    )


# --- the page -----------------------------------------------------------------------------


def page_html(
    timeline: Timeline, summary: dict[str, Any], oracle: Sequence[float | None] | None
) -> str:
    """Every day as a table row, the figures in the introduction, and the plots."""
    ages, daily = _series(timeline, oracle)
    rows = []
    for record, age, best in zip(timeline.records, ages, daily, strict=True):
        decision, run, rollout = record.decision or {}, record.run or {}, record.rollout or {}
        rows.append(
            (
                f"{record.index} ({record.day})",
                record.production or "–",
                number(record.performance),
                number(best),
                "–" if age is None else f"{age:.1f}",
                "–" if record.drifted_share is None else f"{record.drifted_share:.2f}",
                "blocked" if record.batch_blocked else "ok",
                (decision.get("reason") or "–") if decision.get("fired") else "–",
                run.get("registered") or ("run, nothing registered" if run else "–"),
                f"{rollout.get('version')} {rollout.get('phase')}" if rollout else "–",
            )
        )
    s = summary
    cost = s["staleness_cost"]
    intro = (
        f"{s['scenario']} over {s['days']} simulated days under the {s['policy']} policy "
        f"(seed {s['seed']}; the world changes on day {s['change_day']}; labels come back "
        f"{s['label_delay']} days late; {s['traffic']} rows served a day). Mean production "
        f"{s['metric']} {number(s['mean_metric'])}, oracle {_oracle(s)}; "
        f"days past the bound: {_bound(s)}; detection delay: {_detection(s)} (from the "
        "change day to the first blessed run on or after it that a signal started, not the "
        f"schedule); first blessed run after the change: "
        f"{_days_after(s, s.get('first_blessed_days'))}; {s['retrains']} "
        f"retrain(s); {s['promotions']} promotion(s), {s['rollbacks']} rollback(s); false "
        f"triggers {'–' if s['false_triggers'] is None else s['false_triggers']} (firings "
        "other than the schedule while nothing had changed). Cost of staleness: "
        f"{_cost(cost)}. {STALENESS} Performance ({s['metric']}) is production's on the day's "
        "served rows, "
        "judged against their true labels (which the simulation knows at once; monitoring "
        f"only sees them {s['label_delay']} days later)."
    )
    return html_page(
        f"flywheel simulate: {s['scenario']}, {s['policy']}",
        intro=intro,
        table=(
            (
                "day",
                "production",
                timeline.metric,
                "oracle",
                "model age (days)",
                "drifted share",
                "batch",
                "fired",
                "run registered",
                "rollout",
            ),
            rows,
        ),
        figures=figures(timeline, summary, oracle),
    )


def _series(
    timeline: Timeline, oracle: Sequence[float | None] | None
) -> tuple[list[float | None], list[float | None]]:
    """Each day's model age when it began, and the oracle's figure (None where it has none)."""
    daily = list(oracle or [])
    daily += [None] * (len(timeline.records) - len(daily))
    return scores.serving_ages(timeline), daily


def figures(
    timeline: Timeline, summary: dict[str, Any], oracle: Sequence[float | None] | None
) -> list[tuple[str, str]]:
    """The page's plots: (caption, base64 PNG) each."""
    ages, daily = _series(timeline, oracle)
    cost = summary["staleness_cost"]
    return [
        (
            f"production {timeline.metric} per day, against the oracle",
            metric_figure(timeline, daily, summary),
        ),
        ("drift per feature (PSI of the day's window)", drift_figure(timeline)),
        ("trigger firings, by what fired", firings_figure(timeline)),
        ("deployments and rollbacks", deployments_figure(timeline)),
        ("the production model's age", age_figure(timeline, ages)),
        ("the cost of staleness", staleness_figure(timeline, daily, ages, cost)),
    ]


def _axes(title: str, ylabel: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=90)
    ax.set(title=title, ylabel=ylabel, xlabel="simulated day")
    return fig, ax


def _change(ax: Any, timeline: Timeline) -> None:
    if timeline.scenario != "stable" and timeline.change_day < len(timeline.records):
        ax.axvline(timeline.change_day, color="grey", linestyle="--", label="change")


def metric_figure(timeline: Timeline, oracle: list[float | None], s: dict[str, Any]) -> str:
    """Production performance and the oracle's per day, with the bound and the change day."""
    fig, ax = _axes(f"{timeline.metric} per day", timeline.metric)
    points = [(r.index, r.performance) for r in timeline.records if r.performance is not None]
    ax.plot([i for i, _ in points], [v for _, v in points], "o-", markersize=3, label="production")
    best = [(r.index, o) for r, o in zip(timeline.records, oracle, strict=True) if o is not None]
    if best:
        ax.plot([i for i, _ in best], [v for _, v in best], "k:", label="oracle (best possible)")
    if s["floor"] is not None:
        ax.axhline(s["floor"], color="red", linewidth=0.8, label=f"bound {s['floor']:g}")
    _change(ax, timeline)
    return encode_figure(fig, ax)


def drift_figure(timeline: Timeline) -> str:
    """Each feature's PSI per day."""
    fig, ax = _axes("PSI per feature", "PSI")
    names = sorted({name for r in timeline.records for name in r.drift})
    for name in names:
        points = [(r.index, r.drift[name]) for r in timeline.records if name in r.drift]
        ax.plot([i for i, _ in points], [v for _, v in points], ".-", label=name)
    _change(ax, timeline)
    return encode_figure(fig, ax)


def firings_figure(timeline: Timeline) -> str:
    """A mark per fired decision, on the row of what fired; blocked firings hollow."""
    fig, ax = _axes("trigger firings", "")
    fired: dict[str, list[int]] = {}
    blocked: dict[str, list[int]] = {}
    for r in timeline.records:
        decision = r.decision or {}
        reason = str(decision.get("reason") or "")
        if decision.get("fired"):
            fired.setdefault(kind(reason), []).append(r.index)
        elif decision.get("blocked_by"):
            blocked.setdefault(kind(reason), []).append(r.index)
    names = sorted({*fired, *blocked})
    for y, name in enumerate(names):
        ax.plot(fired.get(name, []), [y] * len(fired.get(name, [])), "o", color=f"C{y}")
        hollow = blocked.get(name, [])
        ax.plot(hollow, [y] * len(hollow), "o", mfc="none", color=f"C{y}")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(-1, max(len(timeline.records), 1))
    _change(ax, timeline)
    return encode_figure(fig, ax)


def _version_number(version: str | None) -> float | None:
    if version is None:
        return None
    digits = version.lstrip("v")
    return float(digits) if digits.isdigit() else None


def deployments_figure(timeline: Timeline) -> str:
    """The production version per day, with each promotion, rollback and blocked batch."""
    fig, ax = _axes("production version", "version")
    points = [(r.index, _version_number(r.production)) for r in timeline.records]
    ax.step([i for i, _ in points], [v for _, v in points], where="post", label="production")
    marks = {"promoted": ("g^", "promoted"), "direct": ("gs", "deployed directly")}
    shown: set[str] = set()
    for r in timeline.records:
        rollouts = [r.rollout, (r.rollout or {}).get("earlier")]
        for rollout in [x for x in rollouts if x]:
            phase = str(rollout.get("phase"))
            style, label = marks.get(phase, ("rx", "rolled back"))
            y = _version_number(rollout.get("version"))
            ax.plot([r.index], [y], style, label=None if label in shown else label)
            shown.add(label)
        if r.batch_blocked:
            y = _version_number(r.production)
            ax.plot([r.index], [y], "ks", mfc="none", label=None if "b" in shown else "blocked")
            shown.add("b")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _change(ax, timeline)
    return encode_figure(fig, ax)


def age_figure(timeline: Timeline, ages: list[float | None]) -> str:
    """The production model's age when each day began."""
    fig, ax = _axes("model age", "days")
    points = [(r.index, a) for r, a in zip(timeline.records, ages, strict=True) if a is not None]
    ax.plot([i for i, _ in points], [a for _, a in points], "-")
    _change(ax, timeline)
    return encode_figure(fig, ax)


def staleness_figure(
    timeline: Timeline,
    oracle: list[float | None],
    ages: list[float | None],
    cost: dict[str, Any],
) -> str:
    """Each day's gap to the oracle (or performance) against the model's age, and the fitted
    line."""
    with_oracle = cost["from"] == "gap to the oracle"
    sign = -1.0 if timeline.lower_is_better else 1.0
    fig, ax = _axes(
        "cost of staleness", "how much worse than the oracle" if with_oracle else timeline.metric
    )
    ax.set_xlabel("model age when the day began (days)")
    points = []
    for r, o, a in zip(timeline.records, oracle, ages, strict=True):
        if r.performance is None or a is None or (with_oracle and o is None):
            continue
        gap = sign * (o - r.performance) if with_oracle and o is not None else r.performance
        points.append((a, gap))
    ax.plot([a for a, _ in points], [v for _, v in points], "o", markersize=3)
    if cost["per_day"] is not None and points:
        slope = cost["per_day"] if with_oracle else -sign * cost["per_day"]
        mx = sum(a for a, _ in points) / len(points)
        my = sum(v for _, v in points) / len(points)
        xs = [min(a for a, _ in points), max(a for a, _ in points)]
        ax.plot(xs, [my + slope * (x - mx) for x in xs], "r-", label=f"{slope:+.4f} per day")
    return encode_figure(fig, ax)
