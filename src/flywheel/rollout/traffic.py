"""Synthetic traffic for local rollouts: real rows at a fixed rate, and their labels later.

Requests go out on a fixed schedule (an open loop, so a slow backend does not
slow the load down), one row each, as the Seldon protocol's `jsonData`. For a
share of them the true label is sent back as feedback after a delay, as labels
arrive in production.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from typing import Any

import pandas as pd

from flywheel.config import FeatureSettings


class SyntheticTraffic:
    """An open-loop load generator running in a background thread."""

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
        records = frame[list(features.columns)].to_json(orient="records")
        self.rows = json.loads(records)
        self.labels = [int(v) for v in frame[features.label]]
        self.rps = rps
        self.label_fraction = label_fraction
        self.label_delay = label_delay
        self.random = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SyntheticTraffic:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run()), name="traffic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> Counter[str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        return self.stats

    async def _run(self) -> None:
        from aiohttp import ClientSession, ClientTimeout, TCPConnector

        interval = 1.0 / self.rps
        pending: set[asyncio.Task[None]] = set()
        async with ClientSession(
            connector=TCPConnector(limit=512), timeout=ClientTimeout(total=10)
        ) as session:
            next_at = time.monotonic()
            while not self._stop.is_set():
                i = self.random.randrange(len(self.rows))
                task = asyncio.create_task(self._one(session, i))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if pending:
                await asyncio.wait(pending, timeout=10)

    async def _one(self, session: Any, i: int) -> None:
        body = {"jsonData": [self.rows[i]]}
        self.stats["sent"] += 1
        try:
            async with session.post(f"{self.url}/api/v1.0/predictions", json=body) as response:
                answer = await response.json(content_type=None)
                status = response.status
                role = response.headers.get("X-Flywheel-Role", "?")
        except Exception:
            self.stats["failed"] += 1
            return
        self.stats[f"{role} {status // 100}xx"] += 1
        request_id = (
            (answer or {}).get("meta", {}).get("tags", {}).get("request_id")
            if status == 200
            else None
        )
        if request_id and self.random.random() < self.label_fraction:
            await asyncio.sleep(self.label_delay)
            try:
                async with session.post(
                    f"{self.url}/api/v1.0/feedback",
                    json={"request_id": request_id, "truth": self.labels[i]},
                ) as response:
                    await response.read()
                    self.stats["labels"] += 1
            except Exception:
                self.stats["labels failed"] += 1
