"""Synthetic traffic for local rollouts: real rows at a fixed rate, and their labels later.

Requests go out on a fixed schedule (an open loop, so a slow backend does not
slow the load down), one row each, as the Seldon protocol's `jsonData`. For a
share of them the true label is sent back after a delay, as labels arrive in
production, through Seldon's feedback API: the request, the response, the truth
(the label as the batch holds it: a class, or a number) and a reward (1 if a
classifier's most probable class was the label, else 0; minus the absolute error of a
regression's answer). The load runs in its own process, so
nothing the caller does (the controller importing scipy, say) can delay it.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import time
from collections import Counter
from typing import Any

import pandas as pd

from flywheel.config import FeatureSettings


class SyntheticTraffic:
    """An open-loop load generator running in a child process."""

    def __init__(
        self,
        url: str,
        frame: pd.DataFrame,
        features: FeatureSettings,
        *,
        rps: float = 100.0,
        label_fraction: float = 0.5,
        label_delay: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.url = url.rstrip("/")
        self.rows = json.loads(frame[list(features.columns)].to_json(orient="records"))
        self.labels: list[Any] = frame[features.label].tolist()
        self.rps = rps
        self.label_fraction = label_fraction
        self.label_delay = label_delay
        self.seed = seed
        self.stats: Counter[str] = Counter()
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._results: Any = context.Queue()
        self._process: Any = None

    def start(self) -> SyntheticTraffic:
        """Start sending requests."""
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(target=_load, args=(self,), name="traffic", daemon=True)
        self._process.start()
        return self

    def stop(self) -> Counter[str]:
        """Stop the load and return what happened to it (safe to call twice)."""
        if self._process is not None:
            self._stop.set()
            try:
                self.stats = Counter(self._results.get(timeout=30))
            except Exception:  # the process died: say so rather than invent numbers
                self.stats["lost"] += 1
            self._process.join(10)
            self._process = None
        return self.stats

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_process"] = None
        return state

    async def run(self) -> Counter[str]:
        """The load loop, inside the child process."""
        from aiohttp import ClientSession, ClientTimeout, TCPConnector

        rng = random.Random(self.seed)
        stats: Counter[str] = Counter()
        interval = 1.0 / self.rps
        pending: set[asyncio.Task[None]] = set()
        async with ClientSession(
            connector=TCPConnector(limit=512), timeout=ClientTimeout(total=10)
        ) as session:
            next_at = time.monotonic()
            while not self._stop.is_set():
                task = asyncio.create_task(
                    self._one(session, rng, stats, rng.randrange(len(self.rows)))
                )
                pending.add(task)
                task.add_done_callback(pending.discard)
                # Never catch up after a stall: a burst would overload the very thing that
                # stalled, and the rate must stay what the caller asked for.
                next_at = max(next_at + interval, time.monotonic())
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if pending:
                await asyncio.wait(pending, timeout=10)
        return stats

    async def _one(self, session: Any, rng: random.Random, stats: Counter[str], i: int) -> None:
        stats["sent"] += 1
        try:
            async with session.post(
                f"{self.url}/api/v1.0/predictions", json={"jsonData": [self.rows[i]]}
            ) as response:
                answer = await response.json(content_type=None)
                status = response.status
                role = response.headers.get("X-Flywheel-Role", "?")
        except Exception as error:
            stats["failed"] += 1
            stats[f"failed: {type(error).__name__}"] += 1
            return
        stats[f"{role} {status // 100}xx"] += 1
        if status != 200 or rng.random() >= self.label_fraction:
            return
        await asyncio.sleep(self.label_delay)
        truth = self.labels[i]
        feedback = {
            "request": {"jsonData": [self.rows[i]]},
            "response": answer,
            "truth": {"data": {"ndarray": [truth]}},
            "reward": reward(answer, truth),
        }
        try:
            async with session.post(f"{self.url}/api/v1.0/feedback", json=feedback) as response:
                await response.read()
                stats["labels" if response.status == 200 else "labels refused"] += 1
        except Exception:
            stats["labels failed"] += 1


def _load(traffic: SyntheticTraffic) -> None:
    stats = asyncio.run(traffic.run())
    traffic._results.put(dict(stats))


def reward(answer: Any, truth: Any) -> float:
    """A feedback's reward for one answered row: 1.0 if a classifier's answer (P >= 0.5 of
    a binary's positive class, else the most probable class, by name) was `truth`, else
    0.0; minus the absolute error of a regression's (one value); 0.0 if unreadable."""
    try:
        data = answer["data"]
        row = [float(v) for v in data["ndarray"][0]]
        if len(row) == 1:
            return -abs(row[0] - float(truth))
        if len(row) == 2:
            return float(
                int(row[1] >= 0.5) == truth or data["names"][int(row[1] >= 0.5)] == str(truth)
            )
        best = max(range(len(row)), key=lambda j: (row[j], -j))
        return float(data["names"][best] == str(truth))
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0
