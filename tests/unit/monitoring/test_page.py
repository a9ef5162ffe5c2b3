"""The HTML report: a row per window and the plots over time."""

from __future__ import annotations

import re

from flywheel.monitoring import page
from flywheel.monitoring.page import monitoring_page
from flywheel.monitoring.window import WindowReport
from harness.monitored import Monitored, Window


def test_the_page_has_a_row_per_window_and_five_plots(report: WindowReport) -> None:
    # given two windows of production and one of a canary
    earlier = report.model_copy(update={"start": report.start - (report.end - report.start)})
    canary = report.model_copy(update={"version": "v2", "role": "canary"})
    # when rendered
    page = monitoring_page(
        [report, earlier, canary], "loan-default: monitoring", {"unknown version": 3}
    )
    # then
    assert page.count("<tr>") == 1 + 3
    assert "v2 (canary)" in page and "v1 (production)" in page
    assert len(re.findall(r'src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]{100,}"', page)) == 5
    assert "3 unknown version" in page
    assert "estimates from calibrated scores" in page
    # and whether the served rows met the contract
    assert page.count("<td>ok</td>") == 3


def test_the_page_carries_each_tasks_figures(
    wine: Monitored, diabetes: Monitored, window: Window
) -> None:
    plots = re.compile(r'src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]{100,}"')
    multiclass = window(wine, wine.unseen, "wine")
    regression = window(diabetes, diabetes.unseen, "diabetes")
    # a multiclass page: accuracy, macro F1, ROC AUC, drift, each class' drift, share, traffic
    html = page.monitoring_page([multiclass], "wine", {})
    assert len(plots.findall(html)) == 7 and "one-vs-rest" in html and "macro_f1" in html
    # a regression page: RMSE and MAE, drift, share, traffic; the estimate named DLE
    html = page.monitoring_page([regression], "diabetes", {})
    assert len(plots.findall(html)) == 5 and "rmse [CI]" in html and "DLE" in html


def test_a_perfect_window_whose_bound_rounds_inside_its_value_is_plotted(
    report: WindowReport,
) -> None:
    # given accuracy 1.0 on labels, its upper bound a rounding error below it (as a Wilson
    # interval of all-right answers computes it)
    from flywheel.monitoring.intervals import Interval

    perfect = Interval(value=1.0, low=0.991, high=0.9999999999999999)
    performance = report.performance.model_copy(update={"accuracy": perfect})
    # when rendered, then the page is drawn (no error bar below zero length)
    page = monitoring_page([report.model_copy(update={"performance": performance})], "t", {})
    assert "1.000" in page


def test_the_plots_of_a_metric_are_every_labelled_rows_when_they_were_joined(
    report: WindowReport,
) -> None:
    # given a window whose every labelled row was joined, its accuracy other than the sample's
    from flywheel.monitoring.intervals import Interval
    from flywheel.monitoring.performance import Joined

    joined = Joined(labelled=5000, accuracy=Interval(value=0.5, low=0.49, high=0.51))
    every = report.model_copy(
        update={"performance": report.performance.model_copy(update={"every_label": joined})}
    )
    # when its accuracy is plotted, then the plot is the join's, not the sample's
    assert report.performance.accuracy is not None
    assert report.performance.accuracy.value != 0.5
    assert page.metric_figure([every], "accuracy") != page.metric_figure([report], "accuracy")
    sampled_only = report.performance.model_copy(
        update={"accuracy": joined.accuracy, "every_label": None}
    )
    same = report.model_copy(update={"performance": sampled_only})
    assert page.metric_figure([every], "accuracy") == page.metric_figure([same], "accuracy")
