"""The compiled scorer: scikit-learn's answers without scikit-learn, for every task, or a
recorded reason why not."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flywheel.batches import read_table
from flywheel.compiled import (
    COMPILED_FILE,
    TOLERANCE,
    CompiledScorer,
    NotCompilable,
    compile_model,
    max_difference,
    tolerance,
)
from flywheel.config import FeatureSettings, GeneratorSettings, Metric, ModelSettings, Scalar, Task
from flywheel.predictor import Predictor, compile_checked, dump_model, rows_frame
from flywheel.registry import MODEL_FILE, Registry, RegistryError
from flywheel.storage import LocalStore
from flywheel.synthetic import generate_day
from flywheel.training import train

FEATURES = FeatureSettings()
TREES: dict[str, dict[str, Scalar]] = {
    "HistGradientBoosting": {"max_iter": 15},
    "RandomForest": {"n_estimators": 8, "max_depth": 6},
    "ExtraTrees": {"n_estimators": 8, "max_depth": 6},
    "GradientBoosting": {"n_estimators": 8},
}
CLASSIFIERS = {
    **{f"{tree}Classifier": ("sklearn.ensemble", params) for tree, params in TREES.items()},
    "LogisticRegression": ("sklearn.linear_model", {}),
}
REGRESSORS = {
    **{f"{tree}Regressor": ("sklearn.ensemble", params) for tree, params in TREES.items()},
    **{
        name: ("sklearn.linear_model", {})
        for name in ("LinearRegression", "Ridge", "Lasso", "ElasticNet")
    },
}
FAMILIES = {**CLASSIFIERS, **REGRESSORS}
# What each task is shown on: the generator's mixed features (numeric and categorical) with
# a label of the task, and a dataset scikit-learn ships, all numeric.
MIXED: dict[Task, str] = {"binary": "loans", "multiclass": "tiers", "regression": "losses"}
NUMERIC: dict[Task, str] = {
    "binary": "breast_cancer",
    "multiclass": "wine",
    "regression": "diabetes",
}
# Not compiled, for each task: naive Bayes, and a GLM whose prediction goes through a link.
UNCOMPILABLE: dict[Task, str] = {
    "binary": "sklearn.naive_bayes.GaussianNB",
    "multiclass": "sklearn.naive_bayes.GaussianNB",
    "regression": "sklearn.linear_model.PoissonRegressor",
}
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")


def families(task: Task) -> list[str]:
    return list(REGRESSORS if task == "regression" else CLASSIFIERS)


def cases(worlds: dict[Task, str]) -> list[tuple[str, str]]:
    """(world, family) for every family of each world's task."""
    return [(world, name) for task, world in worlds.items() for name in families(task)]


@dataclass(frozen=True)
class World:
    """Rows, their columns and the task of their label."""

    frame: pd.DataFrame
    features: FeatureSettings
    task: Task

    def fit(self, name: str) -> Any:
        module, params = FAMILIES.get(name, ("", {}))
        path = f"{module}.{name}" if module else name
        settings = ModelSettings(task=self.task, estimator=path, params=params)
        metric: Metric = "rmse" if self.task == "regression" else "accuracy"
        return train(self.frame, self.features, settings, metric).model

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.features.numeric, *self.features.categorical)


def _shipped(name: str, task: Task) -> World:
    """A table scikit-learn ships, as `flywheel data split sklearn:<name>` reads it."""
    frame = read_table(f"sklearn:{name}")
    numeric = tuple(c for c in frame.columns if c != "target")
    return World(frame, FeatureSettings(label="target", numeric=numeric, categorical=()), task)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_day(date(2026, 1, 1), GeneratorSettings(rows_per_day=600))


@pytest.fixture(scope="module")
def worlds(frame: pd.DataFrame) -> dict[str, World]:
    rng = np.random.default_rng(0)
    noisy = frame["credit_score"] + rng.normal(0, 40, len(frame))
    # Classes named, so their order is the model's classes_ (high, low, mid), not a ranking.
    tiers = pd.cut(noisy, [-np.inf, 620, 700, np.inf], labels=["low", "mid", "high"])
    losses = frame["loan_amount"] * (0.05 + 0.6 * frame["defaulted"]) + rng.normal(
        0, 500, len(frame)
    )
    losses = losses.clip(lower=0.0)  # a Poisson GLM fits only amounts of at least zero
    return {
        "loans": World(frame, FEATURES, "binary"),
        "tiers": World(
            frame.assign(tier=tiers.astype(str)), FeatureSettings(label="tier"), "multiclass"
        ),
        "losses": World(frame.assign(loss=losses), FeatureSettings(label="loss"), "regression"),
        **{name: _shipped(name, task) for task, name in NUMERIC.items()},
    }


@pytest.fixture(scope="module")
def fitted(worlds: dict[str, World]) -> Any:
    """(world, family) -> a fitted pipeline, each fitted once for the module."""
    cache: dict[tuple[str, str], Any] = {}

    def get(world: str, name: str) -> Any:
        if (world, name) not in cache:
            cache[world, name] = worlds[world].fit(name)
        return cache[world, name]

    return get


@pytest.fixture(scope="module")
def hgb(fitted: Any) -> Any:
    """The HistGradientBoosting classifier of the loans, shared by the tests that need one."""
    return fitted("loans", "HistGradientBoostingClassifier")


def _awkward(world: World, rows: int = 200) -> pd.DataFrame:
    """Request-shaped rows with missing and unknown categories and missing numbers."""
    out = world.frame[list(world.columns)].head(rows).copy()
    numeric, categorical = world.features.numeric, world.features.categorical
    for i, column in enumerate(categorical[:2]):
        out[column] = out[column].astype(object)
        if i == 0:
            out.loc[out.index[::5], column] = None
            out.loc[out.index[1::5], column] = np.nan
        else:
            out.loc[out.index[2::5], column] = "carrier pigeon"
    out.loc[out.index[::3], numeric[0]] = np.nan
    out.loc[out.index[1::4], numeric[-1]] = np.nan
    return pd.DataFrame.from_records(json.loads(out.to_json(orient="records")))


@pytest.fixture(scope="module")
def awkward(worlds: dict[str, World]) -> dict[str, pd.DataFrame]:
    return {name: _awkward(world) for name, world in worlds.items()}


def _compiled(model: Any, world: World) -> CompiledScorer:
    """Compiled, and loaded back from its artifact as serving loads it."""
    features = world.features
    return CompiledScorer.from_bytes(
        compile_model(model, features.numeric, features.categorical).to_bytes()
    )


def _expected(model: Any, world: World, rows: pd.DataFrame) -> Any:
    return Predictor(model, world.features.numeric, world.features.categorical).outputs(rows)


@pytest.mark.parametrize(("world", "name"), cases(MIXED) + cases(NUMERIC))
def test_each_family_compiles_to_scikit_learns_answers_with_unknown_and_missing_values(
    world: str, name: str, worlds: dict[str, World], fitted: Any, awkward: Any
) -> None:
    # given a fitted pipeline of this family for the world's task, and rows with missing
    # numbers (and unknown and missing categories where the world has categories)
    model, rows = fitted(world, name), awkward[world]
    expected = _expected(model, worlds[world], rows)
    # when it is compiled and loaded back from its artifact
    scorer = _compiled(model, worlds[world])
    # then its answers are scikit-learn's, row for row, one row alone included: class
    # probabilities in the order of the model's classes_, or the predicted value
    width = 1 if worlds[world].task == "regression" else len(model.classes_)
    assert expected.shape == (len(rows), width)
    assert max_difference(scorer, expected, rows) <= tolerance(expected)
    assert np.abs(scorer.outputs(rows.head(1)) - expected[:1]).max() <= tolerance(expected)


# Extreme rows among them push a logistic margin past exp's range: the answer is exactly 0
# or 1, as scikit-learn's, and nothing to warn of in a server's log.
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize(("world", "name"), cases(MIXED))
def test_checked_rows_score_exactly_as_their_frame_does(
    world: str, name: str, worlds: dict[str, World], fitted: Any, awkward: Any
) -> None:
    # given a compiled model of this family and many rows as a request carries them:
    # missing numbers and categories as null, unseen categories, integers beyond 2**53
    features = worlds[world].features
    scorer = _compiled(fitted(world, name), worlds[world])
    columns = worlds[world].columns
    records = awkward[world].to_dict(orient="records")
    rows = [[None if _nan(r[c]) else r[c] for c in columns] for r in records]
    rows[3][columns.index("income")] = 2**53 + 1
    rows[4][columns.index("age")] = 41
    # when they are scored as rows, and through the frame scikit-learn would take
    by_rows = scorer.predict_rows(rows, columns)
    by_frame = scorer.outputs(rows_frame(rows, features.numeric, features.categorical))
    # then the answers are the same numbers, for the batch and for a row alone
    # (alone against alone: a linear model's matrix product may round a batch differently)
    assert np.array_equal(by_rows, by_frame)
    for row in rows[:40]:
        one = rows_frame([row], features.numeric, features.categorical)
        assert np.array_equal(scorer.predict_rows([row], columns), scorer.outputs(one))


@pytest.mark.parametrize(
    ("world", "name"),
    [(w, n) for w, n in cases(MIXED) if n.endswith(("Classifier", "Regressor"))],
)
def test_tree_scores_are_treelites_own_predictions(
    world: str, name: str, worlds: dict[str, World], fitted: Any, awkward: Any
) -> None:
    import treelite
    import treelite.gtil

    # given a compiled tree ensemble and its input matrix for awkward rows
    rows = awkward[world]
    scorer = compile_model(
        fitted(world, name), worlds[world].features.numeric, worlds[world].features.categorical
    )
    x = scorer.features(rows)
    if scorer.header["float32"]:
        x = x.astype(np.float32).astype(np.float64)
    # when it scores them, in one batch, on several threads, and one row alone
    trees = treelite.Model.deserialize_bytes(scorer.trees)
    softmax = scorer.header["link"] == "softmax"
    own = treelite.gtil.predict(trees, x, pred_margin=softmax)
    own = np.asarray(own, dtype=np.float64).reshape(len(x), -1)
    got = scorer.outputs(rows)
    # then its answers are those of treelite's own predict, to the last bit: its
    # probabilities, its one value, or (multiclass boosting) the softmax of its margins
    if softmax:
        e = np.exp(own - own.max(axis=1, keepdims=True))
        assert np.array_equal(got, e / e.sum(axis=1, keepdims=True))
    elif own.shape[1] == 1 and got.shape[1] == 2:
        assert np.array_equal(got[:, 1], own[:, 0])
    else:
        assert np.array_equal(got, own)
    single = scorer.outputs(rows.head(1))
    assert np.array_equal(single, got[:1])
    assert np.array_equal(scorer.outputs(pd.concat([rows] * 2)), np.vstack([got] * 2))


def _nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


# --- each way compiling can fail, for each task: serving keeps scikit-learn, never a failed run


@pytest.mark.parametrize("task", TASKS)
def test_an_estimator_without_a_compiled_form_falls_back_with_the_reason(
    task: Task, worlds: dict[str, World]
) -> None:
    # given a model of the task with no compiled scorer (naive Bayes; a Poisson GLM, whose
    # prediction goes through a link)
    world = worlds[MIXED[task]]
    raw = dump_model(world.fit(UNCOMPILABLE[task]))
    # when it is compiled for serving
    artifact, record = compile_checked(raw, world.features, world.frame)
    # then serving keeps scikit-learn and the record says why
    assert artifact is None
    name = UNCOMPILABLE[task].rpartition(".")[2]
    assert record == {
        "scorer": "scikit-learn",
        "reason": f"{name} has no compiled scorer "
        "(tree ensembles, LogisticRegression and linear regressors do)",
    }


@pytest.mark.parametrize("task", TASKS)
def test_a_model_that_fails_to_compile_falls_back_with_the_reason_not_a_failed_run(
    task: Task, worlds: dict[str, World], fitted: Any
) -> None:
    # given a fitted model the compiler fails on with an error of its own, not a refusal
    # (its encoder's categories gone, as a library upgrade might rename them)
    world = worlds[MIXED[task]]
    name = families(task)[0]
    broken = copy.deepcopy(fitted(MIXED[task], name))
    del broken.steps[0][1].named_transformers_["categorical"].categories_
    # when it is compiled for serving
    artifact, record = compile_checked(dump_model(broken), world.features, world.frame)
    # then serving keeps scikit-learn, and the lineage says what failed
    assert artifact is None
    assert record["scorer"] == "scikit-learn"
    assert record["reason"].startswith(f"the compiler failed on {name}: ")
    assert "categories_" in record["reason"]


@pytest.mark.parametrize("task", TASKS)
def test_a_compiled_scorer_that_fails_is_refused_with_its_error_not_a_failed_run(
    task: Task, worlds: dict[str, World], fitted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a compiled scorer that raises when it scores (a treelite build that breaks)
    def explode(self: CompiledScorer, frame: Any) -> Any:
        raise RuntimeError("gtil: bad model")

    monkeypatch.setattr(CompiledScorer, "outputs", explode)
    world = worlds[MIXED[task]]
    raw = dump_model(fitted(MIXED[task], families(task)[0]))
    # when it is checked
    artifact, record = compile_checked(raw, world.features, world.frame)
    # then serving keeps scikit-learn and the lineage says why, in one line
    assert artifact is None
    assert record == {
        "scorer": "scikit-learn",
        "reason": "the compiled treelite scorer failed on the newest batch: gtil: bad model",
    }


@pytest.mark.parametrize("task", TASKS)
def test_a_compiled_scorer_off_by_more_than_the_tolerance_is_refused(
    task: Task, worlds: dict[str, World], fitted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a compiled scorer whose answers are off by ten times the tolerance (relative to
    # the largest for a regressor's values)
    world = worlds[MIXED[task]]
    model = fitted(MIXED[task], families(task)[-1])
    expected = _expected(model, world, world.frame)
    allowed = tolerance(expected)
    honest = CompiledScorer.outputs
    monkeypatch.setattr(CompiledScorer, "outputs", lambda s, f: honest(s, f) + 10 * allowed)
    # when it is checked against scikit-learn
    artifact, record = compile_checked(dump_model(model), world.features, world.frame)
    # then serving keeps scikit-learn, and the record says by how much, above what
    assert artifact is None
    assert record["scorer"] == "scikit-learn"
    assert record["tolerance"] == allowed
    assert record["max_abs_difference"] == pytest.approx(10 * allowed, rel=1e-3)
    assert f"(above {allowed:.3g}) on {len(world.frame)} rows" in record["reason"]


def test_the_tolerance_is_absolute_for_probabilities_and_relative_for_large_values() -> None:
    # given probabilities, and a regressor's values in the hundreds of millions
    probabilities = np.array([[0.2, 0.8], [1.0, 0.0]])
    values = np.array([[3.0e8], [-1.0]])
    # then the first are held to the tolerance itself, the second to its share of the largest
    assert tolerance(probabilities) == TOLERANCE
    assert tolerance(values) == pytest.approx(TOLERANCE * 3.0e8)
    assert tolerance(np.array([[np.nan]])) == TOLERANCE


@pytest.mark.parametrize("task", TASKS)
def test_a_checked_model_keeps_its_compiled_scorer_with_the_difference_recorded(
    task: Task, worlds: dict[str, World], fitted: Any
) -> None:
    # given the task's default model on the mixed data
    world = worlds[MIXED[task]]
    name = families(task)[0]
    # when it is compiled for serving and checked on the batch
    artifact, record = compile_checked(
        dump_model(fitted(MIXED[task], name)), world.features, world.frame
    )
    # then the artifact is kept, and the record names the scorer and the difference
    assert artifact is not None, record
    assert record["scorer"] == "compiled treelite" and record["source"] == name
    assert record["max_abs_difference"] <= record["tolerance"]
    assert json.loads(artifact.partition(b"\n")[0])["task"] == task


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


def test_an_artifact_of_the_first_format_still_scores_a_binary_classifier(
    frame: pd.DataFrame, fitted: Any
) -> None:
    # given artifacts as format 1 wrote them (a binary classifier's, without task, outputs
    # or link), of a tree ensemble and of a logistic regression
    for name in ("HistGradientBoostingClassifier", "LogisticRegression"):
        model = fitted("loans", name)
        header, _, trees = (
            compile_model(model, FEATURES.numeric, FEATURES.categorical).to_bytes().partition(b"\n")
        )
        spec = json.loads(header)
        first = {k: v for k, v in spec.items() if k not in ("task", "outputs", "link")}
        old = CompiledScorer.from_bytes(json.dumps({**first, "format": 1}).encode() + b"\n" + trees)
        # when it scores, then its answers are still scikit-learn's
        expected = Predictor(model, FEATURES.numeric, FEATURES.categorical).outputs(frame)
        assert max_difference(old, expected, frame) <= TOLERANCE
    # and a format this code does not know is refused, not misread
    with pytest.raises(NotCompilable, match="format 3 is not one of"):
        CompiledScorer.from_bytes(json.dumps({**spec, "format": 3}).encode() + b"\n" + trees)


@pytest.mark.parametrize("world", [*MIXED.values(), *NUMERIC.values()])
def test_predictor_serves_through_the_artifact_and_through_scikit_learn_when_it_does_not_load(
    world: str, worlds: dict[str, World], fitted: Any
) -> None:
    # given a model of the world's task and its checked artifact
    features, rows = worlds[world].features, worlds[world].frame
    raw = dump_model(fitted(world, families(worlds[world].task)[0]))
    artifact, record = compile_checked(raw, features, rows)
    assert artifact is not None and record["scorer"] == "compiled treelite"
    plain = Predictor.from_bytes(raw, features)
    # when a Predictor is given the artifact, or bytes that are no artifact
    compiled = Predictor(plain.model, features.numeric, features.categorical, compiled=artifact)
    broken = Predictor(plain.model, features.numeric, features.categorical, compiled=b"{oops\n")
    # then the first scores through the compiled scorer, the second through scikit-learn,
    # and both give scikit-learn's answer, for a frame and for checked rows
    assert compiled.scorer is not None and broken.scorer is None
    expected = plain.outputs(rows)
    assert np.abs(compiled.outputs(rows) - expected).max() <= tolerance(expected)
    assert np.array_equal(broken.outputs(rows), expected)
    checked = rows[list(plain.columns)].head(5).to_numpy(dtype=object).tolist()
    assert np.abs(compiled.predict_rows(checked) - expected[:5]).max() <= tolerance(expected)


def test_a_pipeline_of_unknown_shape_is_not_compilable(fitted: Any) -> None:
    # given a bare estimator rather than training's preprocess/estimator pipeline
    model = fitted("loans", "LogisticRegression")[-1]
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
    (tmp_path / key).write_bytes(artifact.replace(b'"format":2', b'"format":2 '))
    with pytest.raises(RegistryError, match="does not match the digest"):
        registry.read_optional(with_scorer.version, COMPILED_FILE)


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
    model = World(frame, features, "binary").fit(name)
    # when it is compiled for serving and checked against scikit-learn on the batch
    artifact, record = compile_checked(dump_model(model), features, frame)
    # then the compiled scorer is kept, agreeing within the tolerance
    assert artifact is not None, record
    assert record["scorer"].startswith("compiled ")
    assert record["max_abs_difference"] <= TOLERANCE
