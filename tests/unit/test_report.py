"""The HTML evaluation report: numbers in the table, embedded plots, importance beside cost,
and escaped text."""

from __future__ import annotations

import base64
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flywheel.evaluation import (
    Evaluation,
    FeatureImportance,
    ModelEvaluation,
    calibration,
    roc,
    score,
    slice_scores,
)
from flywheel.report import (
    confusion_figure,
    costly,
    encode_figure,
    evaluation_page,
    html_page,
    importance_rows,
    number,
)

PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _model(role: str, version: str | None, noise: float, seed: int) -> ModelEvaluation:
    """Real scores of probabilities that follow the labels, blurred by `noise`."""
    rng = np.random.default_rng(seed)
    y = pd.Series(rng.integers(0, 2, 400))
    p = np.clip(0.5 * y.to_numpy() + 0.25 + rng.normal(0, noise, 400), 0, 1)
    frame = pd.DataFrame({"region": rng.choice(["north", "south"], 400)})
    return ModelEvaluation(
        role=role,  # type: ignore[arg-type]
        version=version,
        newest=score(y, p),
        holdout=score(y, p) if role == "candidate" else None,
        roc=roc(y, p),
        calibration=calibration(y, p),
        slices=slice_scores(frame, y, p, ["region"], "roc_auc"),
    )


@pytest.fixture(scope="module")
def candidate() -> ModelEvaluation:
    return _model("candidate", None, 0.2, 1)


@pytest.fixture(scope="module")
def production() -> ModelEvaluation:
    return _model("production", "v3", 0.3, 2)


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in PNG.findall(page)]


@pytest.mark.parametrize(
    ("value", "shown"), [(None, "–"), (float("nan"), "–"), (0.5, "0.5000"), (0.81239, "0.8124")]
)
def test_numbers_have_four_places_and_undefined_is_a_dash(value: float | None, shown: str) -> None:
    assert number(value) == shown


def test_the_page_compares_candidate_and_production_with_four_plots(
    candidate: ModelEvaluation, production: ModelEvaluation
) -> None:
    # given an evaluation with a model in production
    evaluation = Evaluation(
        metric="roc_auc", newest_batch="2026-01-14", candidate=candidate, production=production
    )
    # when rendered
    page = evaluation_page(evaluation, "loan-default: candidate against production")
    # then the intro, the gate metric and the difference to production are in the table
    assert "<h1>loan-default: candidate against production</h1>" in page
    assert "Newest batch 2026-01-14: 400 rows" in page and "Production is v3." in page
    delta = candidate.newest.roc_auc - production.newest.roc_auc
    assert (
        f"<tr><td>roc_auc (gate)</td><td>{number(candidate.holdout.roc_auc)}</td>"  # type: ignore[union-attr]
        f"<td>{number(candidate.newest.roc_auc)}</td>"
        f"<td>{number(production.newest.roc_auc)} (Δ {delta:+.4f})</td></tr>"
    ) in page
    # and the four plots are real PNG images embedded in the page
    pngs = _pngs(page)
    assert len(pngs) == 4 and all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", page) == [
        "ROC on the newest batch",
        "Calibration on the newest batch",
        "Confusion matrices on the newest batch (at 0.5)",
        "roc_auc by slice on the newest batch",
    ]


def test_the_first_model_has_no_production_column_values(candidate: ModelEvaluation) -> None:
    evaluation = Evaluation(
        metric="f1", newest_batch="2026-01-14", candidate=candidate, production=None
    )
    page = evaluation_page(evaluation, "first")
    assert "No model is in production yet." in page
    assert f"<tr><td>f1 (gate)</td><td>{number(candidate.holdout.f1)}" in page  # type: ignore[union-attr]
    assert "<td>–</td></tr>" in page and "Δ" not in page
    assert len(_pngs(page)) == 4


def test_text_in_the_page_is_escaped() -> None:
    page = html_page(
        "<script>alert(1)</script>",
        intro="a & b",
        table=(("metric", "<value>"), [("x<y", "1")]),
        figures=[('"quoted" caption', "AAAA")],
    )
    assert "<script>" not in page
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert "<p>a &amp; b</p>" in page and "<th>&lt;value&gt;</th>" in page
    assert "<td>x&lt;y</td>" in page
    assert 'alt="&quot;quoted&quot; caption"' in page


def test_confusion_matrices_are_drawn_side_by_side(
    candidate: ModelEvaluation, production: ModelEvaluation
) -> None:
    one = base64.b64decode(confusion_figure([("candidate", candidate)]))
    two = base64.b64decode(confusion_figure([("candidate", candidate), ("v3", production)]))
    # PNG width is the big-endian integer at bytes 16..20 of the IHDR chunk.
    width = int.from_bytes(one[16:20], "big"), int.from_bytes(two[16:20], "big")
    assert two.startswith(b"\x89PNG") and width[1] > 1.5 * width[0]


def test_a_figure_is_encoded_with_a_legend_of_its_labelled_lines_and_closed() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # given a figure with one labelled line
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="production")
    # when it is encoded with its axes
    png = base64.b64decode(encode_figure(fig, ax, dates=True))
    # then it is a PNG, the line has its legend, and the figure is closed
    assert png.startswith(b"\x89PNG")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["production"]
    assert not plt.fignum_exists(fig.number)


def _feature(low: float, high: float, preprocess: float, scoring: float, memory: float) -> Any:
    return FeatureImportance(
        mean=(low + high) / 2,
        std=0.01,
        low=low,
        high=high,
        preprocess_us_per_row=preprocess * 10,
        preprocess_share=preprocess,
        scoring_share=scoring,
        bytes_per_row=memory,
        encoded_columns=1,
    )


def test_importance_is_plotted_and_tabled_beside_cost_marking_a_costly_feature_that_adds_nothing(
    candidate: ModelEvaluation,
) -> None:
    # given a candidate whose postcode costs most and adds nothing, and whose age adds
    # nothing at little cost
    importance = {
        "income": _feature(0.05, 0.09, 0.2, 0.1, 16.0),
        "age": _feature(-0.01, 0.002, 0.2, 0.1, 16.0),
        "postcode": _feature(-0.004, 0.001, 0.6, 0.8, 500.0),
    }
    with_importance = candidate.model_copy(
        update={"importance": importance, "importance_method": "permutation importance of x"}
    )
    evaluation = Evaluation(
        metric="roc_auc", newest_batch="2026-01-14", candidate=with_importance, production=None
    )
    # when rendered
    page = evaluation_page(evaluation, "first")
    # then a fifth plot shows the importances, and a table sets each beside its cost
    pngs = _pngs(page)
    assert len(pngs) == 5 and pngs[4].startswith(b"\x89PNG")
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", page)[4] == (
        "Permutation importance on the holdout, with t intervals"
    )
    assert "Measured: permutation importance of x." in page
    assert (
        "<tr><td>income</td><td>+0.0700</td><td>[+0.0500, +0.0900]</td><td>2.00</td>"
        "<td>20.0%</td><td>10.0%</td><td>16.0</td><td></td></tr>"
    ) in page
    # and the costly feature that adds nothing stands out from the cheap one
    assert "<td>500.0</td><td>COSTLY, ADDS NOTHING</td></tr>" in page
    assert "<tr><td>age</td>" in page and "<td>16.0</td><td>adds nothing</td></tr>" in page
    assert [row[0] for row in importance_rows(importance)] == ["income", "postcode", "age"]
    assert costly(importance, "postcode") and not costly(importance, "age")
