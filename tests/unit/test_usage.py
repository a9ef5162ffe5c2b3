"""What a step used: measured by the kernel, logged into a Metrics artifact, read back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kfp import dsl

from flywheel.usage import MIB, Usage, cpu_seconds, measure, peak_rss_bytes
from harness.steps import artifact


def busy(seconds: float) -> None:
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def test_a_measured_block_logs_its_usage_into_the_metrics_and_their_file(tmp_path: Path) -> None:
    # given a step's Metrics artifact
    metrics = artifact(dsl.Metrics, tmp_path / "usage")
    # when a block that burns CPU is measured into it
    with measure(metrics) as meter:
        busy(0.2)
    # then its time, CPU time and the process's peak memory are logged, and written too
    assert set(metrics.metadata) == {"seconds", "cpu_seconds", "peak_rss_mib"}
    assert metrics.metadata["cpu_seconds"] >= 0.15
    # (no bound between the two: CPU time counts this process's threads and any
    # child it reaps meanwhile, so it can exceed the wall time)
    assert metrics.metadata["seconds"] > 0
    assert metrics.metadata["peak_rss_mib"] == round(peak_rss_bytes() / MIB, 1)
    assert json.loads((tmp_path / "usage").read_text()) == metrics.metadata
    assert meter.usage is not None and Usage.read(tmp_path / "usage") == Usage.from_metrics(
        meter.usage.as_metrics()
    )


def test_a_failed_block_logs_no_metrics_but_says_what_it_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = artifact(dsl.Metrics, tmp_path / "usage")
    caplog.set_level("INFO", logger="flywheel.usage")
    with pytest.raises(KeyError), measure(metrics):
        raise KeyError("income")
    assert metrics.metadata == {} and not (tmp_path / "usage").exists()
    assert "before failing" in caplog.text and "peak memory" in caplog.text


def test_peak_memory_counts_a_finished_child_and_cpu_time_its_work() -> None:
    # given a child process that holds 600 MiB and burns CPU, then exits
    cpu_before = cpu_seconds()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nx = bytearray(600 * 2**20)\nt = time.process_time() + 0.2\n"
            "while time.process_time() < t: pass",
        ],
        check=True,
    )
    # then the peak is at least what it held, in bytes (not KiB), and its CPU time is counted
    assert peak_rss_bytes() >= 600 * MIB
    assert peak_rss_bytes() < 64 * 1024 * MIB
    assert cpu_seconds() - cpu_before >= 0.15


@pytest.mark.parametrize(
    "metrics",
    [
        {},
        {"seconds": 1.0, "cpu_seconds": 1.0},
        {"seconds": "x", "cpu_seconds": 1, "peak_rss_mib": 2},
        [],
    ],
)
def test_metrics_that_are_not_a_steps_usage_read_as_none(metrics: object) -> None:
    assert Usage.from_metrics(metrics) is None  # type: ignore[arg-type]


def test_a_missing_or_unreadable_file_reads_as_none(tmp_path: Path) -> None:
    assert Usage.read(tmp_path / "absent") is None
    (tmp_path / "garbled").write_text("{not json")
    assert Usage.read(tmp_path / "garbled") is None


def test_usage_reads_as_a_person_would_say_it() -> None:
    used = Usage(seconds=12.34, cpu_seconds=20.0, peak_rss_mib=263.4)
    assert str(used) == "12.3s, 20.0 CPU seconds, peak memory 263 MiB"
    assert used.as_metrics() == {"seconds": 12.34, "cpu_seconds": 20.0, "peak_rss_mib": 263.4}
