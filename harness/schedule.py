"""The order pytest-xdist hands test modules out in: the slowest first.

`make test` runs two workers with `--dist loadfile`, a module to one worker at a time, in
collection order (`--no-loadscope-reorder`: xdist's own order is by number of tests, which put
the one 222 s test of tests/e2e/test_make_run.py near the end and left one worker alone with
it for its last three minutes). Started first, the long modules run beside each other and the
many short ones fill in behind them, so both workers finish together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

# Seconds per module on the clean-clone CI (2 workers, 2 vCPU), from its JUnit report.
# Only the order matters; a module not listed starts after these, in collection order.
SLOW_MODULES: dict[str, float] = {
    "tests/integration/test_rollout_local.py": 460,
    "tests/e2e/test_make_run.py": 222,
    "tests/integration/test_chart.py": 212,
    "tests/e2e/test_examples.py": 208,
    "tests/integration/test_kube_driver.py": 151,
    "tests/integration/test_triggers_scenarios.py": 115,
    "tests/integration/test_cd.py": 102,
    "tests/integration/test_local_pipeline.py": 98,
    "tests/unit/cli/test_pipeline.py": 65,
    "tests/integration/test_rollout_cluster.py": 64,
    "tests/integration/test_monitoring.py": 44,
    "tests/integration/test_s3.py": 41,
    "tests/unit/rollout/test_analysis.py": 40,
    "tests/browser/test_ui.py": 38,
    "tests/integration/test_serving.py": 38,
    "tests/integration/test_simulation.py": 34,
}


class _Item(Protocol):
    @property
    def nodeid(self) -> str: ...


T = TypeVar("T", bound=_Item)


def slowest_first(items: Sequence[T]) -> list[T]:
    """`items` with the known-slow modules first, slowest first; the others keep their order."""
    return sorted(items, key=lambda item: -SLOW_MODULES.get(item.nodeid.split("::", 1)[0], 0))
