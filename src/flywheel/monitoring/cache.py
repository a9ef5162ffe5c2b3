"""Window reports kept in the process between looks: a window whose inputs did not change is
not analysed again.

Each look analyses every window of the look-back, but from one look to the next only a few
change: the newest window, and those whose labels came back. A report is kept under a digest
of everything `analyse_window` reads: the window's summary (its exact counts and its sample),
the labels of its sampled requests, the version's reference (`reference_fingerprint`: its
registry files and the rows read from the source), the monitoring and contract settings, the
model, the role, the window's bounds and the log lines skipped in it. A change to any of them
gives another digest, so a report made from other inputs is never served; only its
`computed_at` is the look's own. The analysis is deterministic (its random draws are seeded),
so a kept report is the one the look would have computed.

The cache lives in the process (`flywheel simulate`, `flywheel watch`, a test's loop): the
window records in the store do not say what they were computed from, so a fresh process
(the chart's CronJobs) analyses every window again.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from flywheel.monitoring.logs import Label, Prediction
from flywheel.monitoring.served import Served

if TYPE_CHECKING:
    import pandas as pd

    from flywheel.config import ContractSettings, MonitoringSettings
    from flywheel.monitoring.performance import Joined
    from flywheel.monitoring.summary import WindowSummary
    from flywheel.monitoring.window import Role, VersionReference, WindowReport

# Reports kept: a look-back of seven days, or of a week of hours (168), for a few versions.
DEFAULT_SIZE = 1024


def reference_fingerprint(
    version: str, files: Iterable[bytes | str | None], frames: Iterable[pd.DataFrame | None]
) -> str:
    """A digest of a version's reference: its registry files as read (`files`) and the rows
    read from the source (`frames`, None for rows that could not be read)."""
    import pandas as pd

    hashed = hashlib.sha256(version.encode())
    for part in files:
        data = part.encode() if isinstance(part, str) else part
        hashed.update(b"\0none" if data is None else len(data).to_bytes(8, "big") + data)
    for frame in frames:
        if frame is None:
            hashed.update(b"\0no rows")
            continue
        hashed.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
        hashed.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return hashed.hexdigest()


def window_key(
    summary: WindowSummary | None,
    sample: Served | Sequence[Prediction],
    labels: Mapping[str, tuple[Label, ...]],
    reference: VersionReference,
    policy: MonitoringSettings,
    contract_policy: ContractSettings | None,
    *,
    model: str,
    role: Role,
    start: datetime,
    end: datetime,
    skipped: Mapping[str, int],
    every_label: Joined | None = None,
) -> str | None:
    """The digest of one window's inputs (`sample`: its sampled requests, as the analysis
    reads them, whose labels join it), or None when the reference has no fingerprint (one
    not loaded by `load_reference`): such a window is always analysed."""
    if not reference.fingerprint:
        return None
    requests = (
        [rid for rid, _ in sample.requests]
        if isinstance(sample, Served)
        else [p.request_id for p in sample]
    )
    joined = [
        [n, list(found)] for n in sorted(set(requests)) if (found := labels.get(n)) is not None
    ]
    basis = {
        "model": model,
        "role": role,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reference": reference.fingerprint,
        "policy": policy.model_dump(mode="json"),
        "contract": None if contract_policy is None else contract_policy.model_dump(mode="json"),
        "skipped": dict(sorted(skipped.items())),
        "summary": None if summary is None else summary.digest(),
        "labels": joined,
        "every_label": None if every_label is None else every_label.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()


class WindowCache:
    """The newest reports by the digest of their inputs (`window_key`), the least recently
    used dropped past `size`; `hits` and `misses` count the looks' windows."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError(f"a window cache holds at least one report, not {size}")
        self.size = size
        self.hits = 0
        self.misses = 0
        self._reports: OrderedDict[str, WindowReport] = OrderedDict()

    def __len__(self) -> int:
        return len(self._reports)

    def get(self, key: str | None, now: datetime) -> WindowReport | None:
        """The report kept under `key`, as computed at `now`; None (a miss) when there is none."""
        found = self._reports.get(key) if key is not None else None
        if found is None:
            self.misses += 1
            return None
        self._reports.move_to_end(key)  # type: ignore[arg-type]  # found: key is a str
        self.hits += 1
        return found.model_copy(update={"computed_at": now})

    def put(self, key: str | None, report: WindowReport) -> None:
        """Keep `report` under `key` (nothing when the key is None)."""
        if key is None:
            return
        self._reports[key] = report
        self._reports.move_to_end(key)
        while len(self._reports) > self.size:
            self._reports.popitem(last=False)
