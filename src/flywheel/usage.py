"""What a pipeline step used: wall time, CPU time and peak memory, recorded in its KFP Metrics.

Measured with getrusage, so a step needs nothing installed and the numbers are the
kernel's. Each step runs in its own process on a cluster and under kfp.local, so the
process's peak resident memory is the step's, which is what its memory limit meets.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class MetricsArtifact(Protocol):
    """What a KFP `Output[Metrics]` offers (kfp is not imported here)."""

    @property
    def path(self) -> str: ...

    @property
    def metadata(self) -> dict[str, Any]: ...

    def log_metric(self, metric: str, value: float) -> None: ...


@dataclass(frozen=True)
class Usage:
    """Wall and CPU seconds over a span of a process, and the process's peak memory."""

    seconds: float
    cpu_seconds: float
    peak_rss_mib: float

    def as_metrics(self) -> dict[str, float]:
        """The metric names and values a step logs (and the KFP UI shows)."""
        return {
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
        }

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> Usage | None:
        """Read back what `as_metrics` wrote, or None if these metrics are not a step's usage."""
        try:
            return cls(
                seconds=float(metrics["seconds"]),
                cpu_seconds=float(metrics["cpu_seconds"]),
                peak_rss_mib=float(metrics["peak_rss_mib"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    @classmethod
    def read(cls, path: Path) -> Usage | None:
        """The usage a step wrote to its Metrics file, or None if there is none."""
        try:
            return cls.from_metrics(json.loads(path.read_text()))
        except (OSError, ValueError):
            return None

    def __str__(self) -> str:
        return (
            f"{self.seconds:.1f}s, {self.cpu_seconds:.1f} CPU seconds, "
            f"peak memory {self.peak_rss_mib:.0f} MiB"
        )


def cpu_seconds() -> float:
    """User and system CPU time of this process and its finished children so far."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        used = resource.getrusage(who)
        total += used.ru_utime + used.ru_stime
    return total


def peak_rss_bytes() -> int:
    """The most resident memory this process, or any one finished child, has held."""
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    unit = 1 if sys.platform == "darwin" else 1024
    return unit * max(
        resource.getrusage(who).ru_maxrss
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )


class Meter:
    """Measures from its creation; `usage` is set when `stop` is called."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.cpu_started = cpu_seconds()
        self.usage: Usage | None = None

    def stop(self) -> Usage:
        """Wall and CPU time since the start, and the peak memory so far."""
        self.usage = Usage(
            seconds=time.monotonic() - self.started,
            cpu_seconds=cpu_seconds() - self.cpu_started,
            peak_rss_mib=peak_rss_bytes() / MIB,
        )
        return self.usage


@contextmanager
def measure(metrics: MetricsArtifact | None = None) -> Iterator[Meter]:
    """Measure the block; when it succeeds, log its usage into `metrics` (a step's Metrics).

    The metrics are also written to the artifact's file: kfp.local treats a Metrics
    artifact without one as missing, and a run's summary reads them from there.
    """
    meter = Meter()
    succeeded = False
    try:
        yield meter
        succeeded = True
    finally:
        usage = meter.stop()
        log.info("used %s%s", usage, "" if succeeded else " before failing")
    if metrics is not None:
        for name, value in usage.as_metrics().items():
            metrics.log_metric(name, value)
        Path(metrics.path).write_text(json.dumps(metrics.metadata))
