"""The ML Test Score's monitoring items, automated on served traffic.

Breck et al. 2017, "The ML Test Score: A Rubric for ML Production Readiness and Technical
Debt Reduction", section V (Monitoring tests). Each test serves simulated days through the
real serving class in-process (flywheel.simulation.traffic.serve_day: the prediction and
feedback logs production writes), injects the fault the item is about, and checks that
monitoring's window report shows it, and that the clean days beside it do not.

Covered further elsewhere, not repeated here:
- Monitor 2: serving refuses wrong types, non-finite numbers and unknown categories with a
  400 naming the feature (tests/unit/serving/test_requests.py); every training batch is
  checked against the contract (tests/unit/test_validation.py).
- Monitor 3 and 5 on hand-made log records: tests/unit/monitoring/test_analysis.py.
- Monitor 1 (dependency changes) is the code_change trigger and the serving pins
  (tests/repo/test_packaging.py); Monitor 6 (latency, throughput) is the report's health and
  `make bench-serve`. Neither is repeated here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from flywheel.config import Settings
from flywheel.contract import Contract
from flywheel.predictor import Predictor
from flywheel.registry import Registry
from flywheel.serving.model import FlywheelModel
from harness.traffic import Play


class _Rescaled:
    """A model behind a serving transform that reads income in thousands: the skew to find."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.classes_ = model.classes_  # a classifier, as the model it wraps

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        return self.model.predict_proba(frame.assign(income=frame["income"] / 1000))


class IncomeInThousands(FlywheelModel):
    """The serving class with a skewed transform in front of the registered model."""

    def load(self) -> None:
        super().load()
        assert self.predictor is not None
        p = self.predictor
        self.predictor = Predictor(_Rescaled(p.model), p.numeric, p.categorical)


class _Unstable:
    """A numerically unstable model: NaN for applicants over 70, infinity under 20."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.classes_ = model.classes_  # a classifier, as the model it wraps

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        out = np.array(self.model.predict_proba(frame), dtype=float)
        out[(frame["age"] > 70).to_numpy()] = np.nan
        out[(frame["age"] < 20).to_numpy()] = np.inf
        return out


class Unstable(FlywheelModel):
    """The serving class in front of an unstable model."""

    def load(self) -> None:
        super().load()
        assert self.predictor is not None
        p = self.predictor
        self.predictor = Predictor(_Unstable(p.model), p.numeric, p.categorical)


def test_monitor_2_serving_inputs_meet_the_data_invariants(play: Play) -> None:
    # given a client that sends 40% of credit scores as null and loan amounts in cents
    def broken(part: pd.DataFrame) -> pd.DataFrame:
        nulls = np.arange(len(part)) % 5 < 2
        return part.assign(
            credit_score=part["credit_score"].astype(float).where(~nulls, np.nan),
            loan_amount=part["loan_amount"] * 100,
        )

    # when day 5 is served as it is and day 6 through that client
    play([5], look=False)
    served, reports = play([6], alter=broken)
    clean, faulty = reports[served[0].day - timedelta(days=1)], reports[served[0].day]
    # then the clean day meets the contract
    assert clean.invariants is not None and clean.invariants.hold
    assert clean.invariants.violations == () and clean.invariants.rows == 300
    # and the faulty day breaks it on those two features, by the contract's own checks
    assert faulty.invariants is not None and not faulty.invariants.hold
    found = {(v.column, v.check) for v in faulty.invariants.violations}
    assert found == {("credit_score", "null rate"), ("loan_amount", "range")}


def test_monitor_2_rows_serving_refuses_never_reach_the_log(play: Play) -> None:
    # given a client that sends an unknown region for applicants over 60
    def mars(part: pd.DataFrame) -> pd.DataFrame:
        return part.assign(region=part["region"].where(part["age"] <= 60, "mars"))

    # when day 5 is served through it
    served, reports = play([5], alter=mars)
    # then those requests were 400s naming the feature, and the window holds only the others
    (day,) = served
    assert day.rejected and all("unknown category 'mars'" in m for m in day.rejected.values())
    assert reports[day.day].health.rows == day.rows < 300
    assert reports[day.day].invariants is not None and reports[day.day].invariants.hold


def test_monitor_3_training_serving_skew_is_watched(play: Play) -> None:
    # given day 5 served by the registered model as it is, and day 6 by a server whose
    # transform reads income in thousands
    play([5], look=False)
    served, reports = play([6], model_class=IncomeInThousands)
    clean, skewed = reports[served[0].day - timedelta(days=1)], reports[served[0].day]
    # then re-scoring a sample offline agrees with the clean day's scores
    assert clean.skew is not None and clean.skew.sampled > 0 and clean.skew.agrees
    # and disagrees with the skewed day's
    assert skewed.skew is not None and not skewed.skew.agrees
    assert skewed.skew.disagreeing > skewed.skew.sampled / 2
    assert skewed.skew.max_difference > 100 * skewed.skew.tolerance


def test_monitor_4_staleness_model_age_and_data_age(play: Play, project: Settings) -> None:
    # given v1, registered now and trained on batches up to day 4
    registry = Registry.from_settings(project)
    created = datetime.fromisoformat(registry.manifest("v1").created_at)
    contract = Contract.from_json(registry.read("v1", "contract.json"))
    newest = datetime.fromisoformat(max(contract.batches)[:10]).replace(tzinfo=UTC)
    # when it serves tomorrow and two weeks later
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    served, reports = play([tomorrow, tomorrow + timedelta(days=14)])
    # then each window reports how old the model and its data are at the window's end
    for day in served:
        health = reports[day.day].health
        end = datetime.combine(day.day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        assert health.model_age_hours == round((end - created).total_seconds() / 3600, 3)
        assert health.data_age_hours == (end - newest - timedelta(days=1)).total_seconds() / 3600
    # and the model two weeks on is two weeks staler
    first, later = (reports[d.day].health for d in served)
    assert later.model_age_hours is not None and first.model_age_hours is not None
    assert later.model_age_hours - first.model_age_hours == 14 * 24


def test_monitor_4_a_day_right_after_training_is_fresh(play: Play, project: Settings) -> None:
    # given the newest day v1's contract was inferred from
    contract = Contract.from_json(Registry.from_settings(project).read("v1", "contract.json"))
    newest = datetime.fromisoformat(max(contract.batches)[:10]).date()
    # when the day after it is served
    served, reports = play([newest + timedelta(days=1)])
    # then its data is one day old at the window's end
    assert reports[served[0].day].health.data_age_hours == 24.0


def test_monitor_5_nan_and_infinite_values_in_inputs_and_outputs(play: Play) -> None:
    # given a client that sends incomes of NaN and infinity for a tenth of rows each
    def holes(part: pd.DataFrame) -> pd.DataFrame:
        i = np.arange(len(part))
        income = part["income"].astype(float).where(i % 10 != 0, np.nan)
        return part.assign(income=income.where(i % 10 != 1, np.inf))

    # when day 5 is served as it is, day 6 through that client, and day 7 by an unstable
    # model, with day 5's labels arriving on day 7
    play([5], look=False)
    play([6], alter=holes, look=False)
    served, reports = play([7], model_class=Unstable)
    clean, inputs, outputs = (reports[served[0].day - timedelta(days=n)] for n in (2, 1, 0))
    # then the clean day has none
    h = clean.health
    assert (h.missing_inputs, h.nan_inputs, h.infinite_inputs, h.nan_outputs) == (0, 0, 0, 0)
    assert h.infinite_outputs == 0 and h.error_rate == 0
    # and the inputs arrive as JSON nulls (JSON has no NaN or infinity), counted as missing
    # (300 rows in 12 requests of 25, each with 3 NaN and 3 infinite incomes)
    assert inputs.health.missing_inputs == 12 * 6 and inputs.health.error_rate == 0
    # and the unstable model's NaN and infinite scores are counted, their requests are errors
    assert outputs.health.nan_outputs > 0 and outputs.health.infinite_outputs > 0
    assert outputs.health.error_rate is not None and 0 < outputs.health.error_rate <= 1
    # and they are kept out of the score distribution and its estimate
    assert outputs.estimate is not None
    assert (
        outputs.estimate.rows == 300 - outputs.health.nan_outputs - outputs.health.infinite_outputs
    )


def test_monitor_7_prediction_quality_drops_on_served_data(play: Play) -> None:
    # given concept drift from day 7: the same inputs, riskier long-standing customers
    # when days 5 to 10 are served, 600 rows a day, labels two days late
    served, reports = play(range(5, 11), scenario="concept_drift", change_day=7, rows=600)
    before, after = (reports[served[i].day] for i in (0, 2))
    # then the labelled days before the change hold the offline accuracy within their interval
    offline = before.offline
    assert offline is not None and before.performance.accuracy is not None
    assert before.performance.labelled == 600
    assert before.performance.accuracy.high >= offline.newest["accuracy"]  # type: ignore[operator]
    # and after it, accuracy and ROC AUC are significantly below the offline figures
    quality = after.performance
    assert quality.labelled == 600 and quality.accuracy is not None and quality.roc_auc is not None
    assert quality.roc_auc.high < offline.newest["roc_auc"]  # type: ignore[operator]
    assert quality.accuracy.high < offline.newest["accuracy"]  # type: ignore[operator]
    # and the days whose labels have not arrived yet have none
    assert [reports[d.day].performance.labelled for d in served[-2:]] == [0, 0]


def test_monitor_7_offline_and_online_metrics_are_side_by_side(play: Play) -> None:
    # when stable days 5 to 7 are served, 600 rows a day, and day 5's labels arrive
    served, reports = play(range(5, 8), rows=600)
    report = reports[served[0].day]
    # then the window carries the version's own offline evaluation beside the online metrics
    assert report.offline is not None
    for metric in ("accuracy", "roc_auc", "log_loss"):
        online = getattr(report.performance, metric)
        offline = report.offline.newest[metric]
        assert online is not None and offline is not None
        # and on stable data the offline figure lies within the online interval
        assert online.low <= offline <= online.high, (metric, online, offline)
