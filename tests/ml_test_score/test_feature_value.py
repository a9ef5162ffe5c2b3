"""The ML Test Score's data items on what features add and cost, automated on a whole run.

Breck et al. 2017, section II (Tests for features and data): "All features are
beneficial" (Data 2) and "No feature's cost is too much" (Data 3). The run below is every
pipeline step in this process (runs.run_in_process) on a small project whose batches carry
a planted column of pure noise as a feature. The measurements themselves are covered in
tests/unit/test_importance.py, the gate's policy in test_gate.py, the report in
test_report.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from flywheel import batches, runs, synthetic
from flywheel.config import Settings
from flywheel.storage import LocalStore


def test_a_planted_noise_feature_is_measured_recorded_and_refused_by_policy(
    small_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # given batches with a column of noise, listed as a feature, and the policy that
    # refuses a feature that adds nothing
    settings = small_settings(
        "features.numeric=[income, age, loan_amount, credit_score, tenure_months, "
        "late_payments, noise]",
        "model.estimator=sklearn.linear_model.LogisticRegression",
        "promotion.importance.unimportant_features=refuse",
    )
    source = batches.BatchSource(LocalStore(settings.data.source))
    for day in synthetic.days(settings.data.generator.start_date, 4):
        frame = synthetic.generate_day(day, settings.data.generator)
        frame["noise"] = np.random.default_rng(day.toordinal()).normal(size=len(frame))
        source.write(day, frame)
    # when the pipeline runs
    run = runs.run_in_process(settings, tmp_path / "work", run_id="noise")
    # then the evaluation records every feature's importance beside its cost
    evaluation = json.loads((tmp_path / "work" / "evaluation.json").read_text())
    importance = evaluation["candidate"]["importance"]
    assert set(importance) == set(settings.features.columns)
    assert importance["late_payments"]["low"] > 0
    assert importance["noise"]["low"] <= 0
    for share in ("preprocess_share", "scoring_share"):
        assert sum(m[share] for m in importance.values()) == pytest.approx(1.0)
    # and the gate refuses the model, naming the noise with its interval
    assert run.blessed is False and not run.version
    decision = json.loads((tmp_path / "work" / "decision.json").read_text())
    refused = {c["name"]: c["detail"] for c in decision["checks"] if not c["passed"]}
    assert "importance noise" in refused and "importance late_payments" not in refused
    noise = importance["noise"]
    assert (
        f"[{noise['low']:+.4f}, {noise['high']:+.4f}] does not lie above zero"
        in (refused["importance noise"])
    )
