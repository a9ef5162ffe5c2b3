"""The trigger engine's metrics: its evaluations and firings, read from its books, and the
thresholds of its policy, which the chart's alerts hold the monitor's window metrics to.

The engine runs as short-lived steps of a CronWorkflow, which Prometheus cannot scrape.
Every evaluation is a create-only decision record in the store (flywheel.triggers.ledger),
so the always-running rollout controller's exporter reads the ones that are new since
its last scrape and counts them: the counters are that process's since it started, as
Prometheus counters are, and the first read takes only the newest record, for the gauges.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, get_args

from flywheel.config import TriggerSettings
from flywheel.exposition import Metric, Sample
from flywheel.monitoring.window import WindowReport
from flywheel.triggers.ledger import Ledger
from flywheel.triggers.signals import Kind, performance_threshold

KINDS: tuple[str, ...] = get_args(Kind)
OUTCOMES = ("fired", "blocked", "quiet")
# New decision records read at one scrape, at most: a cron every minute for over an hour.
READ_AT_MOST = 100

METRICS: dict[str, Metric] = {
    "flywheel_trigger_evaluations_total": Metric(
        "Trigger engine evaluations, by outcome: fired (a run was due), blocked by a "
        "safeguard, or quiet (nothing fired)",
        "counter",
    ),
    "flywheel_trigger_firings_total": Metric(
        "Triggers that fired, by trigger (the reason) and whether a safeguard held them back",
        "counter",
    ),
    "flywheel_trigger_last_evaluation_timestamp_seconds": Metric(
        "When the trigger engine last evaluated"
    ),
    "flywheel_trigger_last_outcome": Metric("1 for the outcome of the newest evaluation"),
    "flywheel_trigger_fired": Metric(
        "1 when the trigger fired at the newest evaluation, 0 when it was judged and did not"
    ),
    "flywheel_trigger_drift_share_threshold": Metric(
        "The drift trigger's share: a window drifts above this share of drifted features"
    ),
    "flywheel_trigger_drift_psi_threshold": Metric(
        "The drift trigger's PSI threshold of a named feature"
    ),
    "flywheel_trigger_performance_threshold": Metric(
        "What a metric's upper confidence bound must fall below for the trigger to fire: "
        "its floor, or the version's offline figure less max_drop (a metric where higher is "
        "better)"
    ),
    "flywheel_trigger_performance_ceiling": Metric(
        "What an error's (rmse, mae, mape, log_loss) lower confidence bound must rise above for "
        "the trigger to fire: its ceiling, or the version's offline figure times 1 + max_rise"
    ),
    "flywheel_trigger_min_labelled": Metric(
        "Rows a window needs (labelled, or served for CBPE) before the trigger judges it"
    ),
}


def _outcome(decision: dict[str, Any]) -> str:
    if decision.get("fired"):
        return "fired"
    return "blocked" if decision.get("firings") else "quiet"


class TriggerMetrics:
    """The engine's evaluations of one model, counted from its decision records."""

    def __init__(self, ledger: Ledger, model: str) -> None:
        self.ledger = ledger
        self.model = model
        self._lock = threading.Lock()
        self._outcomes = dict.fromkeys(OUTCOMES, 0)
        self._firings = {(kind, blocked): 0 for kind in KINDS for blocked in ("false", "true")}
        self._seen: str | None = None
        self._newest: dict[str, Any] | None = None
        self._started = False

    def refresh(self) -> None:
        """Read the decision records written since the last refresh (a StoreError if the
        store fails: nothing is counted then, and the next refresh reads them)."""
        keys = self.ledger.decision_keys()
        with self._lock:
            new = [k for k in keys if self._seen is None or k > self._seen]
            counted = self._started
            if not counted:
                new = new[-1:]  # the newest, for the gauges; counting starts now
            new = new[-READ_AT_MOST:]
        read = [self.ledger.decision(key) for key in new]
        with self._lock:
            for key, decision in zip(new, read, strict=True):
                if counted:
                    self._outcomes[_outcome(decision)] += 1
                    blocked = "true" if decision.get("blocked_by") else "false"
                    for firing in decision.get("firings", []):
                        at = (str(firing.get("kind")), blocked)
                        self._firings[at] = self._firings.get(at, 0) + 1
                self._seen, self._newest = key, decision
            self._started = True

    def samples(self) -> list[Sample]:
        """The counters, and what the newest evaluation decided."""
        model = {"model": self.model}
        with self._lock:
            found = [
                Sample("flywheel_trigger_evaluations_total", {**model, "outcome": o}, n)
                for o, n in self._outcomes.items()
            ]
            found += [
                Sample(
                    "flywheel_trigger_firings_total",
                    {**model, "trigger": kind, "blocked": blocked},
                    n,
                )
                for (kind, blocked), n in self._firings.items()
            ]
            newest = self._newest
        if newest is None:
            return found
        at = datetime.fromisoformat(str(newest["at"])).timestamp()
        found.append(Sample("flywheel_trigger_last_evaluation_timestamp_seconds", model, at))
        found += [
            Sample(
                "flywheel_trigger_last_outcome",
                {**model, "outcome": o},
                float(o == _outcome(newest)),
            )
            for o in OUTCOMES
        ]
        found += [
            Sample(
                "flywheel_trigger_fired",
                {**model, "trigger": str(check["kind"])},
                float(bool(check["fired"])),
            )
            for check in newest.get("checks", [])
        ]
        return found


def threshold_samples(
    model: str, policy: TriggerSettings, reports: Sequence[WindowReport]
) -> Iterable[Sample]:
    """The policy's thresholds; the performance ones for each version in `reports` (the
    newest window of each), as the engine judges that window."""
    labels = {"model": model}
    if policy.drift is not None:
        share = policy.drift.share
        yield Sample("flywheel_trigger_drift_share_threshold", labels, share)
        for feature, psi in policy.drift.features.items():
            yield Sample(
                "flywheel_trigger_drift_psi_threshold", {**labels, "feature": feature}, psi
            )
    for kind, trigger in (
        ("performance", policy.performance),
        ("estimated_performance", policy.estimated_performance),
    ):
        if trigger is None:
            continue
        yield Sample(
            "flywheel_trigger_min_labelled", {**labels, "trigger": kind}, trigger.min_labelled
        )
        for report in reports:
            threshold, _ = performance_threshold(trigger, report)
            metric = trigger.metric_for(report.task)
            version = {"version": report.version, "role": report.role}
            # An error's bound is a ceiling: a series of its own, so that no rule can compare
            # it the way a floor is compared.
            name = "ceiling" if trigger.lower_is_better(report.task) else "threshold"
            yield Sample(
                f"flywheel_trigger_performance_{name}",
                {**labels, **version, "trigger": kind, "metric": metric},
                threshold,
            )
