"""The compiled scorer: scikit-learn's probabilities without scikit-learn, or a recorded reason why not."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flywheel.compiled import (
    COMPILED_FILE,
    TOLERANCE,
    CompiledScorer,
    NotCompilable,
    compile_model,
    max_difference,
)
from flywheel.config import FeatureSettings, GeneratorSettings, ModelSettings
from flywheel.predictor import Predictor, compile_checked, dump_model, rows_frame
from flywheel.registry import MODEL_FILE, Registry, RegistryError
from flywheel.storage import LocalStore
from flywheel.synthetic import generate_day
from flywheel.training import train

FEATURES = FeatureSettings()
FAMILIES = {
    "HistGradientBoostingClassifier": ("sklearn.ensemble", {"max_iter": 15}),
    "RandomForestClassifier": ("sklearn.ensemble", {"n_estimators": 8, "max_depth": 6}),
    "ExtraTreesClassifier": ("sklearn.ensemble", {"n_estimators": 8, "max_depth": 6}),
    "GradientBoostingClassifier": ("sklearn.ensemble", {"n_estimators": 8}),
    "LogisticRegression": ("sklearn.linear_model", {}),
}


def _fit(name: str, frame: pd.DataFrame) -> Any:
    module, params = FAMILIES.get(name, ("sklearn.naive_bayes", {}))
    settings = ModelSettings(estimator=f"{module}.{name}", params=params)
    return train(frame, FEATURES, settings, "roc_auc").model


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_day(date(2026, 1, 1), GeneratorSettings(rows_per_day=600))


@pytest.fixture(scope="module")
def hgb(frame: pd.DataFrame) -> Any:
    """One fitted HistGradientBoosting pipeline shared by the tests that need one."""
    return _fit("HistGradientBoostingClassifier", frame)


@pytest.fixture(scope="module")
def awkward(frame: pd.DataFrame) -> pd.DataFrame:
    """Request-shaped rows with missing and unknown categories and missing numbers."""
    rows = frame[[*FEATURES.numeric, *FEATURES.categorical]].head(200).copy()
    rows["region"] = rows["region"].astype(object)
    rows.loc[rows.index[::5], "region"] = None
    rows.loc[rows.index[1::5], "region"] = np.nan
    rows.loc[rows.index[2::5], "channel"] = "carrier pigeon"
    rows.loc[rows.index[::3], "income"] = np.nan
    return pd.DataFrame.from_records(json.loads(rows.to_json(orient="records")))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_compiles_to_scikit_learns_probabilities_with_unknown_and_missing_values(
    name: str, frame: pd.DataFrame, awkward: pd.DataFrame, hgb: Any
) -> None:
    # given a fitted pipeline of this family and rows with unknown and missing values
    model = hgb if name == "HistGradientBoostingClassifier" else _fit(name, frame)
    expected = Predictor(model, FEATURES.numeric, FEATURES.categorical).predict_proba(awkward)
    # when it is compiled and loaded back from its artifact
    scorer = CompiledScorer.from_bytes(
        compile_model(model, FEATURES.numeric, FEATURES.categorical).to_bytes()
    )
    # then its probabilities are scikit-learn's, row for row, one row alone included
    assert max_difference(scorer, expected, awkward) <= TOLERANCE
    assert np.abs(scorer.predict_proba(awkward.head(1)) - expected[:1]).max() <= TOLERANCE


@pytest.mark.parametrize("name", list(FAMILIES))
def test_checked_rows_score_exactly_as_their_frame_does(
    name: str, frame: pd.DataFrame, awkward: pd.DataFrame, hgb: Any
) -> None:
    # given a compiled model of this family and many rows as a request carries them:
    # missing numbers and categories as null, unseen categories, integers beyond 2**53
    model = hgb if name == "HistGradientBoostingClassifier" else _fit(name, frame)
    scorer = CompiledScorer.from_bytes(
        compile_model(model, FEATURES.numeric, FEATURES.categorical).to_bytes()
    )
    columns = (*FEATURES.numeric, *FEATURES.categorical)
    records = awkward.to_dict(orient="records")
    rows = [[None if _nan(r[c]) else r[c] for c in columns] for r in records]
    rows[3][columns.index("income")] = 2**53 + 1
    rows[4][columns.index("age")] = 41
    # when they are scored as rows, and through the frame scikit-learn would take
    by_rows = scorer.predict_rows(rows, columns)
    by_frame = scorer.predict_proba(rows_frame(rows, FEATURES.numeric, FEATURES.categorical))
    # then the probabilities are the same numbers, for the batch and for a row alone
    # (alone against alone: a linear model's matrix product may round a batch differently)
    assert np.array_equal(by_rows, by_frame)
    for row in rows[:40]:
        one = rows_frame([row], FEATURES.numeric, FEATURES.categorical)
        assert np.array_equal(scorer.predict_rows([row], columns), scorer.predict_proba(one))


@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "LogisticRegression"])
def test_tree_scores_are_treelites_own_predictions(
    name: str, frame: pd.DataFrame, awkward: pd.DataFrame, hgb: Any
) -> None:
    import treelite
    import treelite.gtil

    # given a compiled tree ensemble and its input matrix for awkward rows
    model = hgb if name == "HistGradientBoostingClassifier" else _fit(name, frame)
    scorer = compile_model(model, FEATURES.numeric, FEATURES.categorical)
    x = scorer.features(awkward)
    if scorer.header["float32"]:
        x = x.astype(np.float32).astype(np.float64)
    # when it scores them, in one batch, on several threads, and one row alone
    trees = treelite.Model.deserialize_bytes(scorer.trees)
    positive = np.asarray(treelite.gtil.predict(trees, x), dtype=np.float64).reshape(len(x), -1)
    expected = positive if positive.shape[1] == 2 else positive[:, -1]
    got = scorer.predict_proba(awkward)
    # then its answers are those of treelite's own predict, to the last bit
    assert np.array_equal(got if positive.shape[1] == 2 else got[:, 1], expected)
    single = scorer.predict_proba(awkward.head(1))
    assert np.array_equal(single, got[:1])
    assert np.array_equal(scorer.predict_proba(pd.concat([awkward] * 2)), np.vstack([got] * 2))


def _nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def test_an_estimator_without_a_compiled_form_falls_back_with_the_reason(
    frame: pd.DataFrame,
) -> None:
    # given a naive Bayes model, which has no compiled scorer
    raw = dump_model(_fit("GaussianNB", frame))
    # when it is compiled for serving
    artifact, record = compile_checked(raw, FEATURES, frame)
    # then serving keeps scikit-learn and the record says why
    assert artifact is None
    assert record == {
        "scorer": "scikit-learn",
        "reason": "GaussianNB has no compiled scorer (tree ensembles and LogisticRegression do)",
    }


def test_a_tampered_artifact_disagrees_with_scikit_learn(frame: pd.DataFrame, hgb: Any) -> None:
    # given a compiled HistGradientBoosting model whose region lookup was swapped around
    model = hgb
    header, _, trees = (
        compile_model(model, FEATURES.numeric, FEATURES.categorical).to_bytes().partition(b"\n")
    )
    spec = json.loads(header)
    lookup = next(s for s in spec["steps"] if s["column"] == "region")
    lookup["codes"] = dict(
        zip(lookup["codes"], reversed(list(lookup["codes"].values())), strict=True)
    )
    tampered = CompiledScorer.from_bytes(json.dumps(spec).encode() + b"\n" + trees)
    expected = Predictor(model, FEATURES.numeric, FEATURES.categorical).predict_proba(frame)
    # when it is checked against scikit-learn, then the difference is far above the tolerance
    assert max_difference(tampered, expected, frame) > TOLERANCE


def test_predictor_serves_through_the_artifact_and_through_scikit_learn_when_it_does_not_load(
    frame: pd.DataFrame, hgb: Any
) -> None:
    # given a model and its checked artifact
    raw = dump_model(hgb)
    artifact, record = compile_checked(raw, FEATURES, frame)
    assert artifact is not None and record["scorer"] == "compiled treelite"
    plain = Predictor.from_bytes(raw, FEATURES)
    # when a Predictor is given the artifact, or bytes that are no artifact
    compiled = Predictor(plain.model, FEATURES.numeric, FEATURES.categorical, compiled=artifact)
    broken = Predictor(plain.model, FEATURES.numeric, FEATURES.categorical, compiled=b"{oops\n")
    # then the first scores through the compiled scorer, the second through scikit-learn,
    # and both give scikit-learn's answer
    assert compiled.scorer is not None and broken.scorer is None
    expected = plain.predict_proba(frame)
    assert np.abs(compiled.predict_proba(frame) - expected).max() <= TOLERANCE
    assert np.array_equal(broken.predict_proba(frame), expected)


def test_a_pipeline_of_unknown_shape_is_not_compilable(frame: pd.DataFrame) -> None:
    # given a bare estimator rather than training's preprocess/estimator pipeline
    model = _fit("LogisticRegression", frame)[-1]
    # when it is compiled, then the refusal names what it got
    with pytest.raises(NotCompilable, match="LogisticRegression is not a two-step"):
        compile_model(model, FEATURES.numeric, FEATURES.categorical)


def test_the_registered_artifact_is_read_digest_checked_and_only_where_it_was_stored(
    frame: pd.DataFrame, hgb: Any, tmp_path: Path
) -> None:
    # given one version registered with its compiled scorer and one without
    raw = dump_model(hgb)
    artifact, _ = compile_checked(raw, FEATURES, frame)
    assert artifact is not None
    registry = Registry(LocalStore(tmp_path), "m")
    with_scorer = registry.register({MODEL_FILE: raw, COMPILED_FILE: artifact}, run_id="r1")
    without = registry.register({MODEL_FILE: raw + b" "}, run_id="r2")
    # when serving reads the optional artifact, then it gets exactly what was stored, or None
    assert registry.read_optional(with_scorer.version, COMPILED_FILE) == artifact
    assert registry.read_optional(without.version, COMPILED_FILE) is None
    # and a changed artifact is refused by its digest, not served
    key = f"models/m/versions/{with_scorer.version}/{COMPILED_FILE}"
    (tmp_path / key).write_bytes(artifact.replace(b'"format":1', b'"format":1 '))
    with pytest.raises(RegistryError, match="does not match the digest"):
        registry.read_optional(with_scorer.version, COMPILED_FILE)


def test_a_compiled_scorer_that_fails_is_refused_with_its_error_not_a_failed_run(
    frame: pd.DataFrame, hgb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a compiled scorer that raises when it scores (a treelite build that breaks)
    def explode(self: CompiledScorer, frame: Any) -> Any:
        raise RuntimeError("gtil: bad model")

    monkeypatch.setattr(CompiledScorer, "predict_proba", explode)
    # when it is checked
    artifact, record = compile_checked(dump_model(hgb), FEATURES, frame)
    # then serving keeps scikit-learn and the lineage says why, in one line
    assert artifact is None
    assert record == {
        "scorer": "scikit-learn",
        "reason": "the compiled treelite scorer failed on the newest batch: gtil: bad model",
    }


LAYOUTS = {
    "all numeric": FeatureSettings(categorical=()),
    "all categorical": FeatureSettings(numeric=()),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", ["HistGradientBoostingClassifier", "LogisticRegression"])
def test_a_model_over_one_kind_of_feature_compiles_to_scikit_learns_probabilities(
    frame: pd.DataFrame, name: str, layout: str
) -> None:
    # given a model trained on numeric features alone, or on categorical ones alone
    features = LAYOUTS[layout]
    module, params = FAMILIES[name]
    settings = ModelSettings(estimator=f"{module}.{name}", params=params)
    model = train(frame, features, settings, "roc_auc").model
    # when it is compiled for serving and checked against scikit-learn on the batch
    artifact, record = compile_checked(dump_model(model), features, frame)
    # then the compiled scorer is kept, agreeing within the tolerance
    assert artifact is not None, record
    assert record["scorer"].startswith("compiled ")
    assert record["max_abs_difference"] <= TOLERANCE


def test_a_model_that_fails_to_compile_falls_back_with_the_reason_not_a_failed_run(
    frame: pd.DataFrame, hgb: Any
) -> None:
    # given a fitted model the compiler fails on with an error of its own, not a refusal
    # (its encoder's categories gone, as a library upgrade might rename them)
    broken = copy.deepcopy(hgb)
    del broken.steps[0][1].named_transformers_["categorical"].categories_
    # when it is compiled for serving
    artifact, record = compile_checked(dump_model(broken), FEATURES, frame)
    # then serving keeps scikit-learn, and the lineage says what failed
    assert artifact is None
    assert record["scorer"] == "scikit-learn"
    assert record["reason"].startswith("the compiler failed on HistGradientBoostingClassifier: ")
    assert "categories_" in record["reason"]
