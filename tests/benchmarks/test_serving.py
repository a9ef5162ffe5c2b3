"""`make bench-serving`'s and `make soak`'s tables, goals and checks, on made-up figures (the
servers and the load are the benchmarks' to run: minutes each)."""

from __future__ import annotations

import json
from typing import Any

from benchmarks import serving as bench
from benchmarks import soak


def phase(rps: float, p50: float, p99: float, errors: int = 0) -> dict[str, float]:
    return {"requests": rps * 10, "errors": errors, "rps": rps, "p50_ms": p50, "p99_ms": p99}


def opened(rps: float, p50: float, p99: float) -> dict[str, float]:
    """An open-loop phase at 200 requests/s offered."""
    return {**phase(rps, p50, p99), "offered_rps": 200.0}


def results(
    *, flywheel_rps: float = 1000.0, gateway_p50: float = 2.5, open_p99: float = 8.0
) -> dict[str, dict[str, Any]]:
    """Five peers; Flywheel's figures as given, the others fixed."""
    return {
        "ceiling": {"closed": phase(1200, 3, 7), "open": opened(200, 1.5, 4), "rss_mb": 150},
        "seldon_sklearn": {
            "closed": phase(190, 19, 32),
            "open": opened(180, 15, 90),
            "rss_mb": 300,
            "batch": phase(20, 90, 120),
        },
        "mlserver": {"closed": phase(150, 25, 40), "open": opened(150, 20, 120), "rss_mb": 500},
        "flywheel": {
            "closed": phase(flywheel_rps, 4, 9),
            "open": opened(200, 2.0, open_p99),
            "rss_mb": 320,
            "batch": phase(60, 30, 45),
        },
        "gateway": {"closed": phase(900, 5, 11), "open": opened(200, gateway_p50, 9), "rss_mb": 60},
    }


def test_every_goal_is_met_when_flywheel_is_near_the_ceiling_and_fast_at_200_per_second() -> None:
    # given Flywheel at 1000 req/s (ceiling 1200, MLServer 150), p99 8 ms, gateway +0.5 ms
    measured = bench.figures(results())
    # when
    checked = bench.goals(measured)
    # then every goal is met, each with its figure
    assert {name: ok for name, (ok, _) in checked.items()} == {
        "Flywheel >= 0.8x the constant ceiling": True,
        "Flywheel >= 5x MLServer's sklearn runtime": True,
        "p99 <= 10 ms, open loop": True,
        "the gateway adds <= 1 ms at p50": True,
        "no errors": True,
    }
    assert checked["Flywheel >= 0.8x the constant ceiling"][1] == "0.83x"
    assert checked["the gateway adds <= 1 ms at p50"][1] == "+0.50 ms"
    assert measured["batch_vs_sklearn"] == 3.0
    assert measured["batch_rows_per_s"] == 60 * bench.BATCH_ROWS


def test_each_goal_is_missed_on_its_own_figure() -> None:
    # given Flywheel at 700 req/s, a 15 ms p99 and a gateway adding 3 ms, with one error
    figures = results(flywheel_rps=700.0, gateway_p50=5.0, open_p99=15.0)
    figures["gateway"]["open"]["errors"] = 1
    # when
    checked = bench.goals(bench.figures(figures))
    lines = bench.report(checked)
    # then each goal is MISSED with what was measured
    assert {name: ok for name, (ok, _) in checked.items()} == {
        "Flywheel >= 0.8x the constant ceiling": False,
        "Flywheel >= 5x MLServer's sklearn runtime": False,
        "p99 <= 10 ms, open loop": False,
        "the gateway adds <= 1 ms at p50": False,
        "no errors": False,
    }
    assert "      MISSED  Flywheel >= 5x MLServer's sklearn runtime: 4.67x" in lines
    assert (
        "      MISSED  p99 <= 10 ms, open loop: 15.0 ms; answered 200/s of the 200/s sent" in lines
    )


def test_each_ratio_is_taken_within_a_round_and_reported_as_median_and_range() -> None:
    # given three rounds; in the second the whole machine ran at half speed
    rounds = [results(flywheel_rps=1000.0), results(flywheel_rps=500.0), results()]
    rounds[1]["ceiling"]["closed"]["rps"] = 600.0
    rounds[2]["ceiling"]["closed"]["rps"] = 1000.0
    # when the rounds are combined
    ranges = bench.spread(rounds)
    measured = bench.rounds_figures(rounds)
    # then each round's own ratio counts (1000/1200, 500/600, 1000/1000), not the ratio of
    # the peers' medians (1000/1000), and the range shows the spread
    low, middle, high = ranges["vs_ceiling"]
    assert (round(low, 3), round(middle, 3), round(high, 3)) == (0.833, 0.833, 1.0)
    assert measured["vs_ceiling"] == middle
    # and the table's figures are each the median of the rounds
    assert bench.combined(rounds)["ceiling"]["closed"]["rps"] == 1000.0


def test_an_error_in_any_round_misses_the_no_errors_goal() -> None:
    # given three rounds, one request failing in the last
    rounds = [results(), results(), results()]
    rounds[2]["gateway"]["open"]["errors"] = 1
    # when they are combined, then errors are summed, not a median of them
    measured = bench.rounds_figures(rounds)
    assert measured["errors"] == 1.0
    assert bench.goals(measured)["no errors"][0] is False


def test_a_peer_not_run_leaves_its_goal_unmeasured_and_its_row_marked() -> None:
    # given a run without MLServer (no .venv-mlserver)
    figures = results()
    del figures["mlserver"]
    # when
    measured = bench.figures(figures)
    checked = bench.goals(measured)
    lines = bench.table(figures, 200)
    # then its goal is neither met nor missed, its row says so, and the JSON has a null
    assert checked["Flywheel >= 5x MLServer's sklearn runtime"] == (None, "not measured")
    assert any(
        line.startswith("MLServer 1.7.1 sklearn runtime") and "not run" in line for line in lines
    )
    assert json.loads(json.dumps(measured))["vs_mlserver"] is None


def test_the_gateway_goal_is_unknown_when_the_open_loop_outran_the_server() -> None:
    # given Flywheel answering 120 of the 200 requests/s sent: its latencies are a queue's
    figures = results(gateway_p50=1500.0, open_p99=3000.0)
    figures["flywheel"]["open"]["rps"] = 120.0
    # when
    checked = bench.goals(bench.figures(figures))
    # then p99 is missed, saying why, and the gateway's difference is not judged
    assert checked["p99 <= 10 ms, open loop"] == (
        False,
        "3000.0 ms; answered 120/s of the 200/s sent",
    )
    assert checked["the gateway adds <= 1 ms at p50"][0] is None
    assert "outran the server" in checked["the gateway adds <= 1 ms at p50"][1]


def test_the_table_has_a_row_per_peer_and_the_batch_lines() -> None:
    # when
    lines = bench.table(results(), 200)
    # then
    assert "@200/s p99" in lines[0]
    rows = [line for line in lines[2:] if line and not line.startswith(" ")]
    assert [row.split("  ")[0] for row in rows[:5]] == list(bench.PEERS.values())
    assert any("60000 rows/s" in line for line in lines)


def test_percentiles_are_nearest_rank() -> None:
    ordered = [float(i) for i in range(1, 101)]
    assert bench.percentile(ordered, 50) == 50.0
    assert bench.percentile(ordered, 99) == 99.0
    assert bench.percentile([3.0], 99) == 3.0
    summary = bench.summarise([0.002, 0.001, 0.003, 0.004], 2.0, 0)
    assert summary["rps"] == 2.0 and summary["p50_ms"] == 2.0 and summary["p99_ms"] == 4.0


def test_the_mlserver_request_is_one_row_in_the_pandas_codec() -> None:
    # when
    target = bench.mlserver_target("127.0.0.1:1", "loan-default")
    body = json.loads(target.body)
    # then one input per feature, strings decoded as str, and probabilities asked for
    assert target.path == "/v2/models/loan-default/infer"
    assert body["parameters"] == {"content_type": "pd"}
    assert [i["name"] for i in body["inputs"]] == list(bench.ROW)
    region = next(i for i in body["inputs"] if i["name"] == "region")
    assert region == {
        "name": "region",
        "shape": [1],
        "data": ["north"],
        "datatype": "BYTES",
        "parameters": {"content_type": "str"},
    }
    assert body["outputs"] == [{"name": "predict_proba"}]


def test_a_model_without_the_gateway_is_judged_on_every_goal_but_the_gateways() -> None:
    # given a multiclass model's peers: no gateway in front of it
    figures = results()
    del figures["gateway"]
    # when its goals are checked without the gateway, and its table drawn without its row
    checked = bench.goals(bench.figures(figures), gateway=False)
    lines = bench.table(figures, 200, [p for p in bench.PEERS if p != "gateway"])
    # then the ratio goals are judged as for the binary model, and the gateway is left out
    assert list(checked) == [
        "Flywheel >= 0.8x the constant ceiling",
        "Flywheel >= 5x MLServer's sklearn runtime",
        "p99 <= 10 ms, open loop",
        "no errors",
    ]
    assert all(ok for ok, _ in checked.values())
    assert not any(line.startswith(bench.PEERS["gateway"]) for line in lines)


def test_the_json_line_keeps_the_binary_names_and_prefixes_the_other_models() -> None:
    # given two models' figures over two rounds, and their in-process scorer costs
    rounds = [results(), results(flywheel_rps=600.0)]
    measured = {"binary": bench.rounds_figures(rounds), "regression": bench.rounds_figures(rounds)}
    ranges = {"binary": bench.spread(rounds), "regression": bench.spread(rounds)}
    costs = {"binary": {"compiled_us": 30.0, "sklearn_us": 6000.0}, "regression": {}}
    # when the line is made
    line = json.loads(json.dumps(bench.last_line(measured, ranges, costs)))
    # then the binary model's figures have the names they always had, the other's its task's
    assert line["vs_ceiling"] == line["regression_vs_ceiling"] == 0.6667
    assert line["vs_ceiling_low"] == 0.5 and line["regression_vs_ceiling_high"] == 0.8333
    assert line["scorer_compiled_us"] == 30.0 and "regression_scorer_compiled_us" not in line


def test_each_model_sends_its_own_row_and_asks_mlserver_for_its_answer() -> None:
    # given a regressor's row
    row = {"age": 0.03, "bmi": 0.06}
    # when its requests are made
    mlserver = json.loads(bench.mlserver_target("127.0.0.1:1", "diabetes", row, "predict").body)
    seldon = json.loads(bench.seldon_target("127.0.0.1:1", 3, row).body)
    # then MLServer is asked for `predict`, and each protocol carries the row
    assert mlserver["outputs"] == [{"name": "predict"}]
    assert [i["name"] for i in mlserver["inputs"]] == ["age", "bmi"]
    assert mlserver["inputs"][0]["datatype"] == "FP64"
    assert seldon == {"jsonData": [row] * 3}


def test_each_round_starts_one_place_later() -> None:
    assert bench._turned(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert bench._turned(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert bench._turned([], 2) == []


# --- soak ---------------------------------------------------------------------------------


def soak_figures(**overrides: Any) -> dict[str, Any]:
    figures = {
        "requests": 1000,
        "rps": 199.0,
        "offered_rps": 200.0,
        "p99_ms": 8.0,
        "errors": 0,
        "served": 1000,
        "memory_growth": 0.02,
        "log_written": 990,
        "log_dropped": 10.0,
    }
    return {**figures, **overrides}


def test_the_soak_passes_when_nothing_fails_memory_is_flat_and_the_log_accounts_for_every_request() -> (
    None
):
    checked = soak.checks(soak_figures())
    assert all(ok for ok, _ in checked.values())
    assert (
        checked["the prediction log is complete"][1]
        == "990 written + 10 dropped = 1000, 1000 served"
    )


def test_each_soak_check_fails_on_its_own_figure() -> None:
    assert not soak.checks(soak_figures(errors=3))["no errors"][0]
    assert soak.checks(soak_figures(rps=88.0, p99_ms=76000.0))["kept up with 200 requests/s"] == (
        False,
        "answered 88.0/s, p99 76000.0 ms",
    )
    assert soak.checks(soak_figures(memory_growth=0.12))["memory grows <= 10% after warm-up"] == (
        False,
        "+12.0%",
    )
    assert not soak.checks(soak_figures(memory_growth=None))["memory grows <= 10% after warm-up"][0]
    assert not soak.checks(soak_figures(log_written=980))["the prediction log is complete"][0]


def test_memory_growth_compares_the_means_after_the_warm_up() -> None:
    # given a big warm-up, then 100 MB rising to 105 MB
    samples = [
        (0.0, 50.0),
        (5.0, 300.0),
        (10.0, 100.0),
        (15.0, 100.0),
        (20.0, 101.0),
        (25.0, 105.0),
        (30.0, 105.0),
    ]
    # when / then: the warm-up is left out, each end is a mean of up to three samples
    growth = soak.memory_growth(samples, warmup=10.0)
    assert growth is not None and abs(growth - (105.0 / 100.0 - 1)) < 1e-9
    assert soak.memory_growth(samples[:3], warmup=10.0) is None


def test_the_dropped_gauge_is_summed_over_workers() -> None:
    exposition = "\n".join(
        [
            "# TYPE flywheel_log_dropped gauge",
            'flywheel_log_dropped{method="predict",worker_id="11"} 3.0',
            'flywheel_log_dropped{method="predict",worker_id="12"} 4.0',
            'flywheel_log_dropped{method="feedback",worker_id="12"} 2.0',
            'flywheel_log_written{method="predict",worker_id="11"} 90.0',
        ]
    )
    assert soak.gauge_sum(exposition, "flywheel_log_dropped") == 7.0
    assert soak.gauge_sum(exposition, "flywheel_missing") == 0.0
