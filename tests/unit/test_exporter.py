"""The rollout controller's /metrics: its own looks, and what the engine's steps stored."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from flywheel import exporter
from flywheel.config import Settings, load_settings
from flywheel.monitoring.records import write_record
from flywheel.registry import Registry
from flywheel.rollout.controller import RolloutController
from flywheel.rollout.metrics import RolloutMetrics
from flywheel.storage import LocalStore, StoreUnavailable
from flywheel.triggers.ledger import Ledger
from harness.reports import DAY0, interval, window_report
from harness.rollouts import GOOD, ReplayDriver


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        None,
        env={},
        overrides=[
            f"storage.uri={tmp_path / 'store'}",
            "rollout.steps=[10, 50, 100]",
            "rollout.accuracy=off",
        ],
    )


@pytest.fixture
def controller(settings: Settings) -> RolloutController:
    registry = Registry(LocalStore(settings.storage.uri), settings.model_name)
    for tag in "ab":
        registry.register({"model.joblib": tag.encode()}, run_id=tag)
    registry.move_alias("production", "v1", expected=None, reason="first", actor="test")
    return RolloutController(registry, ReplayDriver([GOOD]), settings.rollout, sleep=lambda _: None)


@pytest.fixture
def served(
    settings: Settings, controller: RolloutController
) -> Iterator[tuple[str, exporter.Exporter, Clock]]:
    metrics = RolloutMetrics(settings.model_name)
    controller.on_record = metrics.record
    clock = Clock()
    running = exporter.Exporter(settings, controller, metrics, max_age=15, clock=clock)
    server = exporter.serve(running, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", running, clock
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def _series(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if not line.startswith("#")
    }


def test_the_endpoint_serves_the_rollout_the_newest_window_and_the_engines_decision(
    settings: Settings, controller: RolloutController, served: tuple[str, exporter.Exporter, Clock]
) -> None:
    url, _, _ = served
    # given a canary of v2 that passed its first step, a monitoring record of production and a decision
    controller.start("v2")
    controller.tick()
    store = controller.registry.store
    write_record(store, window_report(1, labelled=300, accuracy=interval(0.7)))
    ledger = Ledger(store, settings.model_name)
    at = DAY0 + timedelta(days=2)
    ledger.write_decision(
        ledger.decision_key(at),
        {
            "at": at.isoformat(),
            "fired": False,
            "firings": [],
            "checks": [{"kind": "drift", "fired": False}],
        },
    )
    # when Prometheus scrapes the controller
    series = _series(_get(f"{url}/metrics"))
    # then the rollout, its last look, the window and the decision are there, labelled
    model = 'model="loan-default"'
    assert series[f"flywheel_rollout_canary_weight_percent{{{model}}}"] == 50
    assert series[f"flywheel_rollout_step{{{model}}}"] == 2
    assert series[f'flywheel_rollout_looks_total{{{model},action="advance"}}'] == 1
    assert series[f'flywheel_rollout_check_threshold{{{model},check="error rate"}}'] >= 0
    assert series[
        f'flywheel_monitor_metric{{{model},version="v1",role="production",metric="accuracy",bound="high"}}'
    ] == pytest.approx(0.73)
    assert series[f'flywheel_trigger_fired{{{model},trigger="drift"}}'] == 0
    assert (
        f'flywheel_registry_version_created_timestamp_seconds{{{model},version="v2",role="canary"}}'
        in series
    )
    assert series[f'flywheel_exporter_store_reads_total{{{model},result="ok"}}'] == 1
    # and when production's alias moved, beside the window's length, for the alert that
    # gives a version just promoted until its first window closes
    moved = controller.registry.alias("production")
    assert moved is not None
    assert series[
        f'flywheel_registry_alias_moved_timestamp_seconds{{{model},alias="production",version="v1"}}'
    ] == pytest.approx(datetime.fromisoformat(moved.at).timestamp())
    assert series[f"flywheel_monitor_window_seconds{{{model}}}"] == 86400
    # and the health check answers, anything else is not found
    assert _get(f"{url}/healthz") == "ok\n"
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _get(f"{url}/nothing")


def test_the_store_is_read_at_most_once_per_max_age_and_a_failure_keeps_the_last_figures(
    controller: RolloutController,
    served: tuple[str, exporter.Exporter, Clock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _, clock = served
    controller.start("v2")
    first = _series(_get(f"{url}/metrics"))

    # when the store goes down, within the cache's age and after it
    def down(prefix: str) -> list[str]:
        raise StoreUnavailable("the store is down")

    monkeypatch.setattr(controller.registry.store, "list", down)
    cached = _series(_get(f"{url}/metrics"))
    clock.now += 16
    failed = _series(_get(f"{url}/metrics"))
    # then the cached figures are served without a read, then kept, the failure counted
    ok = 'flywheel_exporter_store_reads_total{model="loan-default",result="ok"}'
    bad = ok.replace('"ok"', '"failed"')
    assert (cached[ok], cached[bad]) == (1, 0)
    assert (failed[ok], failed[bad]) == (1, 1)
    weight = 'flywheel_rollout_canary_weight_percent{model="loan-default"}'
    assert first[weight] == cached[weight] == failed[weight] == 10


def test_a_scrape_while_a_slow_read_of_the_store_goes_on_gets_the_last_figures_at_once(
    controller: RolloutController,
    served: tuple[str, exporter.Exporter, Clock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, running, clock = served
    controller.start("v2")
    first = _series(_get(f"{url}/metrics"))
    # given a store that stalls on its next listing, and a scrape due to read it
    stalled, release = threading.Event(), threading.Event()
    listing = controller.registry.store.list

    def slow(prefix: str) -> list[str]:
        stalled.set()
        release.wait(30)
        return listing(prefix)

    monkeypatch.setattr(controller.registry.store, "list", slow)
    clock.now += 16
    reading = threading.Thread(target=running.text)
    reading.start()
    assert stalled.wait(10)
    try:
        # when Prometheus scrapes again meanwhile, then it is answered with the last figures,
        # without waiting for the read or starting another (the read ends only later)
        again = _series(_get(f"{url}/metrics"))
        assert again == first
    finally:
        release.set()
        reading.join(10)
    ok = 'flywheel_exporter_store_reads_total{model="loan-default",result="ok"}'
    assert _series(running.text())[ok] == 2
