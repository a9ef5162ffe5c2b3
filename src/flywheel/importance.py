"""What each feature adds to a model, and what it costs to prepare and score.

Importance is permutation importance on the holdout, as scikit-learn computes it:
the drop in the promotion metric when one feature's values are shuffled across rows,
repeated with seeded shuffles, and a Student t interval with n-1 degrees of freedom
over the repeats. With `resample` (the default) each repeat scores a seeded bootstrap
resample of the holdout rows, and the interval is the mean plus or minus t times the
repeats' standard deviation: the bootstrap's spread estimates how much the importance
would vary from one holdout to another. Without it, the interval is of the mean drop
over the shuffles (t times the standard error) on these very rows, and a pure-noise
feature that happens to correlate with the label on a few hundred rows gets a narrow
interval above zero. Neither covers the training's noise: a feature whose interval
lies above zero measurably helps this model, on rows like these.

Cost is measured on the same holdout rows, per feature:

- preprocessing: the wall time of turning the feature's column into model input, as
  serving does (flywheel.predictor.feature_frame), then through its own transformer
  (a clone of the fitted one, fitted on that column alone so it can run alone: the
  same steps on the same values); a passthrough column costs its conversion only, and
  so does a column its transformer cannot run on alone (all missing, say), as the
  method says.
  The minimum of a few runs, as timeit advises, so that a busy machine adds less.
- scoring: the share of the estimator's per-row work that falls on the feature.
  For tree ensembles it is the share of decision-node visits that split on one of
  the feature's encoded columns while every holdout row is scored (each tree's leaf
  for each row, then the splits on the path to that leaf). For any other estimator
  it is the share of encoded columns, which is exact for a linear model: one
  multiply-add per encoded column and row.
- memory: the feature's bytes per row in the model's input frame (deep: strings
  count in full), plus its encoded columns at eight bytes each.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Any

from flywheel.config import FeatureSettings, ImportanceSettings, Metric
from flywheel.errors import FlywheelError
from flywheel.evaluation import FeatureImportance
from flywheel.predictor import feature_frame
from flywheel.problem import from_model
from flywheel.training import labels, scorer

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

_TIMING_RUNS = 5
_ENCODED_BYTES = 8  # the preprocessed matrix is float64


class ImportanceError(FlywheelError, ValueError):
    """The model is not the preprocessing-then-estimator Pipeline that training builds."""


def measure(
    model: Any,
    holdout: pd.DataFrame,
    features: FeatureSettings,
    metric: Metric,
    settings: ImportanceSettings,
    seed: int,
) -> tuple[dict[str, FeatureImportance] | None, str]:
    """Each feature's permutation importance and cost on the holdout, and how both were measured.

    None, and why, when the holdout holds one class only (or one value of a regression's
    label): nothing can be ranked there.
    """
    import numpy as np
    from sklearn import config_context
    from threadpoolctl import threadpool_limits

    x = feature_frame(holdout, features.numeric, features.categorical)
    problem = from_model(model, features.label)
    y = labels(holdout, problem)
    preprocess, estimator = _steps(model)
    if y.nunique() < 2:
        what = "one class" if problem.is_classifier else "one label value"
        return None, f"not measured: the {len(y)} holdout rows hold {what} only"
    owners = encoded_owners(preprocess, features.columns)
    # Timed as serving runs it, with scikit-learn's checks.
    seconds, conversion_only = preprocess_seconds(preprocess, holdout, features)
    # Dozens of small predictions of rows already checked: OpenMP's thread start-up and
    # scikit-learn's argument checks would cost more than the work, far more when busy.
    with (
        threadpool_limits(limits=1, user_api="openmp"),
        config_context(assume_finite=True, skip_parameter_validation=True),
    ):
        encoded = np.ascontiguousarray(preprocess.transform(x), dtype=np.float64)
        spread = permutation(
            estimator, encoded, y, owners, scorer(metric, problem.task), settings, seed
        )
        visits, scoring = scoring_work(estimator, encoded, owners, features.columns)
    memory = x.memory_usage(deep=True, index=False)
    rows = max(len(x), 1)
    total_seconds = sum(seconds.values()) or 1.0
    total_visits = sum(visits.values()) or 1.0
    out = {}
    for name in features.columns:
        width = owners.count(name)
        out[name] = FeatureImportance(
            # No encoded columns (an imputer drops a feature training never saw a value of):
            # the model never sees it, so shuffling it changes nothing.
            **spread.get(name, {"mean": 0.0, "std": 0.0, "low": 0.0, "high": 0.0}),
            preprocess_us_per_row=seconds[name] / rows * 1e6,
            preprocess_share=seconds[name] / total_seconds,
            scoring_share=visits[name] / total_visits,
            bytes_per_row=float(memory[name]) / rows + width * _ENCODED_BYTES,
            encoded_columns=width,
        )
    method = (
        f"permutation importance of {metric} on {len(x)} holdout rows, "
        f"{settings.repeats} seeded shuffles per feature"
        + (
            f" each on a bootstrap resample, {settings.confidence:.0%} t interval of the "
            "importance (t times the repeats' standard deviation)"
            if settings.resample
            else f", {settings.confidence:.0%} t interval of the mean drop"
        )
        + "; preprocessing: each feature's own conversion and transformer, timed"
        + "".join(
            f" ({name}: its conversion only, as its transformer cannot run on the holdout's "
            f"values alone: {why})"
            for name, why in conversion_only.items()
        )
        + "".join(
            f"; {name}: no encoded columns, so no importance"
            for name in features.columns
            if name not in spread
        )
        + f"; scoring: {scoring}; memory: input bytes per row plus 8 per encoded column"
    )
    return out, method


def permutation(
    estimator: Any,
    encoded: npt.NDArray[np.float64],
    y: pd.Series,
    owners: Sequence[str],
    scoring: str,
    settings: ImportanceSettings,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Mean, standard deviation (n-1) and t interval of each feature's permutation importance.

    scikit-learn's `permutation_importance` on the whole Pipeline would transform the
    raw rows again for every shuffle, which costs most of the time. The encoders act on
    each feature's columns alone and row by row, so shuffling a feature's rows and then
    encoding equals encoding and then shuffling the feature's encoded columns together:
    this shuffles those, with exactly the shuffles `permutation_importance` draws for
    `seed`. Without `settings.resample` the two agree (a test checks it); with it, each
    repeat's baseline and shuffled scores are taken on that repeat's bootstrap rows.
    `scoring` is a scikit-learn scorer's name (training.scorer).
    """
    import numpy as np
    from scipy import stats
    from sklearn.metrics import get_scorer
    from sklearn.utils import check_random_state

    scorer = get_scorer(scoring)
    n = settings.repeats
    labels = np.asarray(y)
    classes = hasattr(estimator, "classes_")
    draws = _draws(labels, n, seed, classes) if settings.resample else [np.arange(len(labels))] * n
    full = None if settings.resample else scorer(estimator, encoded, labels)
    baselines = [
        full if full is not None else scorer(estimator, encoded[d], labels[d]) for d in draws
    ]
    feature_seed = check_random_state(seed).randint(np.iinfo(np.int32).max + 1)
    quantile = float(stats.t.ppf(0.5 + settings.confidence / 2, df=n - 1))
    out = {}
    for name in dict.fromkeys(owners):
        columns = np.flatnonzero(np.asarray(owners) == name)
        state = check_random_state(feature_seed)
        shuffled = encoded.copy()
        order = np.arange(len(shuffled))
        drops = []
        for draw, baseline in zip(draws, baselines, strict=True):
            state.shuffle(order)
            shuffled[:, columns] = shuffled[np.ix_(order, columns)]
            drops.append(baseline - scorer(estimator, shuffled[draw], labels[draw]))
        mean, std = float(np.mean(drops)), float(np.std(drops, ddof=1))
        # Resampled, the repeats' spread is the estimate's own standard error; shuffled
        # only, the interval is of their mean, the expected drop on these very rows.
        half = quantile * std * (1.0 if settings.resample else 1 / np.sqrt(n))
        out[name] = {"mean": mean, "std": std, "low": mean - half, "high": mean + half}
    return out


def _draws(
    labels: npt.NDArray[Any], n: int, seed: int, classes: bool = True
) -> list[npt.NDArray[np.intp]]:
    """`n` seeded bootstrap resamples of the rows, each holding every class of a classifier's
    labels (a score such as ROC AUC needs them)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    every = len(np.unique(labels)) if classes else 0
    draws: list[npt.NDArray[np.intp]] = []
    while len(draws) < n:
        draw = rng.integers(0, len(labels), len(labels))
        if not classes or len(np.unique(labels[draw])) == every:
            draws.append(draw)
    return draws


def _steps(model: Any) -> tuple[Any, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if (
        not isinstance(model, Pipeline)
        or len(model.steps) != 2
        or not isinstance(model.steps[0][1], ColumnTransformer)
    ):
        raise ImportanceError(
            f"cannot attribute cost to features: the model is a {type(model).__name__}, "
            "not a Pipeline of a ColumnTransformer and an estimator"
        )
    return model.steps[0][1], model.steps[1][1]


def _groups(preprocess: Any, columns: Sequence[str]) -> list[tuple[Any, list[str]]]:
    """The fitted ColumnTransformer's (transformer, input columns), in output order."""
    names = list(getattr(preprocess, "feature_names_in_", columns))
    out = []
    for _, transformer, selected in preprocess.transformers_:
        picked = [names[c] if isinstance(c, Integral) else str(c) for c in list(selected)]
        if transformer != "drop" and picked:
            out.append((transformer, picked))
    return out


def encoded_owners(preprocess: Any, columns: Sequence[str]) -> list[str]:
    """For each column of the preprocessed matrix, the input feature it comes from.

    Read from the fitted steps, not guessed from the columns' names (`region`'s category
    `type_a` and a feature `region_type` both name a column `region_type_a`): the
    ColumnTransformer lays its transformers' outputs side by side, in `transformers_`
    order; a one-hot encoder gives its i-th input one column per category in
    `categories_[i]` (less a dropped one), in input order; any other step keeps its
    inputs' columns, or some of them (an imputer drops a column with no values), by name.
    """
    owners = []
    for transformer, picked in _groups(preprocess, columns):
        owners += picked if transformer == "passthrough" else _step_owners(transformer, picked)
    return owners


def _step_owners(transformer: Any, picked: list[str]) -> list[str]:
    """The input feature of each output column of one fitted transformer or Pipeline."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    steps = (
        [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
    )
    names, owners = list(picked), list(picked)
    for step in steps:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        out = [str(n) for n in step.get_feature_names_out(names)]
        if isinstance(step, OneHotEncoder):
            dropped = step.drop_idx_
            widths = [
                len(categories) - int(dropped is not None and dropped[i] is not None)
                for i, categories in enumerate(step.categories_)
            ]
            if len(widths) != len(owners) or sum(widths) != len(out):
                raise ImportanceError(
                    f"cannot tell which of {picked} each of the one-hot encoder's "
                    f"{len(out)} columns comes from"
                )
            owners = [
                owner for owner, width in zip(owners, widths, strict=True) for _ in range(width)
            ]
        elif out != names:
            index = {name: i for i, name in enumerate(names)}
            unknown = [n for n in out if n not in index]
            if unknown or len(index) != len(names):
                raise ImportanceError(
                    f"cannot tell which feature encoded column {(unknown or out)[0]!r} is"
                )
            owners = [owners[index[n]] for n in out]
        names = out
    return owners


def preprocess_seconds(
    preprocess: Any, holdout: pd.DataFrame, features: FeatureSettings
) -> tuple[dict[str, float], dict[str, str]]:
    """Seconds to prepare each feature's column of the holdout (see the module docstring),
    and the features timed by their conversion alone, with why.

    A transformer refitted on one holdout column may not run there (all its values are
    missing: the imputer drops the column, the scaler refuses none); such a feature's
    time is its conversion's, and the run goes on.
    """
    import warnings

    import numpy as np
    from sklearn.base import clone

    numeric = set(features.numeric)
    out = {}
    conversion_only = {}
    for transformer, picked in _groups(preprocess, features.columns):
        for name in picked:
            kind = ((name,), ()) if name in numeric else ((), (name,))

            def convert(kind: tuple[tuple[str, ...], tuple[str, ...]] = kind) -> pd.DataFrame:
                return feature_frame(holdout, *kind)

            if transformer == "passthrough":
                out[name] = _fastest(convert)
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the lone fit's, not the model's
                    alone = clone(transformer).fit(convert())
                    if np.shape(alone.transform(convert()))[1] == 0:
                        raise ValueError("it leaves no column")
            except Exception as error:  # a cost measurement must not stop the run
                conversion_only[name] = (str(error).splitlines() or [repr(error)])[0].rstrip(".")
                out[name] = _fastest(convert)
                continue
            out[name] = _fastest(lambda alone=alone, convert=convert: alone.transform(convert()))
    return out, conversion_only


def _fastest(run: Any) -> float:
    best = float("inf")
    for _ in range(_TIMING_RUNS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def scoring_work(
    estimator: Any, encoded: npt.ArrayLike, owners: Sequence[str], columns: Sequence[str]
) -> tuple[dict[str, float], str]:
    """Each feature's units of scoring work over the rows, and what a unit is."""
    import numpy as np

    matrix = np.ascontiguousarray(encoded, dtype=np.float64)
    per_column = _tree_visits(estimator, matrix)
    method = "decision-node visits on the feature's columns while scoring the holdout"
    if per_column is None:
        per_column = np.ones(matrix.shape[1])
        method = "share of encoded columns (one multiply-add each, exact for a linear model)"
    work = dict.fromkeys(columns, 0.0)
    for owner, units in zip(owners, per_column, strict=True):
        work[owner] += float(units)
    return work, method


def _tree_visits(estimator: Any, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    """Splits visited per encoded column over all rows and trees; None if not a tree ensemble."""
    import numpy as np

    visits = np.zeros(matrix.shape[1])
    if hasattr(estimator, "_predictors"):  # HistGradientBoosting*
        for tree, leaves in reached_leaves(estimator, matrix):
            nodes = tree.nodes
            paths = _path_splits(
                nodes["left"],
                nodes["right"],
                nodes["is_leaf"].astype(bool),
                nodes["feature_idx"],
                matrix.shape[1],
            )
            visits += paths[leaves].sum(axis=0)
        return visits
    trees = getattr(estimator, "estimators_", None)
    if trees is None:
        return None
    flat = list(np.ravel(np.asarray(trees, dtype=object)))
    if not flat or not all(hasattr(t, "tree_") for t in flat):
        return None
    for tree in flat:
        reached = tree.decision_path(matrix.astype(np.float32))
        split = tree.tree_.feature >= 0
        counts = np.asarray(reached.sum(axis=0)).ravel()
        np.add.at(visits, tree.tree_.feature[split], counts[split])
    return visits


def reached_leaves(
    estimator: Any, matrix: npt.NDArray[np.float64]
) -> Iterator[tuple[Any, npt.NDArray[np.intp]]]:
    """Each tree of a fitted HistGradientBoosting model, and the node each row ends in.

    The tree's own traversal (the one prediction uses, with its handling of missing
    values and categories), run on a copy whose leaves hold their own index as value.
    """
    import numpy as np
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    known, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
    for iteration in estimator._predictors:
        for tree in iteration:
            nodes = tree.nodes.copy()
            nodes["value"] = np.arange(len(nodes))
            marked = TreePredictor(nodes, tree.binned_left_cat_bitsets, tree.raw_left_cat_bitsets)
            yield tree, marked.predict(matrix, known, f_idx_map, 1).astype(np.intp)


def _path_splits(
    left: npt.NDArray[Any],
    right: npt.NDArray[Any],
    is_leaf: npt.NDArray[np.bool_],
    feature: npt.NDArray[Any],
    width: int,
) -> npt.NDArray[np.float64]:
    """For each node, how many splits on each column lie on the path from the root to it."""
    import numpy as np

    paths = np.zeros((len(left), width))
    stack = [0]
    while stack:
        node = stack.pop()
        if is_leaf[node]:
            continue
        for child in (int(left[node]), int(right[node])):
            paths[child] = paths[node]
            paths[child, feature[node]] += 1
            stack.append(child)
    return paths
