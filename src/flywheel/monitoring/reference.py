"""What a look compares a version's traffic against: its contract, evaluation and model, and
the rows its contract was inferred from (`load_reference`); with worker processes, the
model loaded and run in a process of its own (`Remote`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from flywheel import batches
from flywheel.batches import BatchError
from flywheel.contract import Contract
from flywheel.evaluation import Evaluation
from flywheel.monitoring.cache import reference_fingerprint
from flywheel.monitoring.estimation import MIN_REFERENCE_ROWS, DirectLoss
from flywheel.monitoring.rescored import Rescored, batch_rows, read_rescored
from flywheel.monitoring.window import Scorer, VersionReference
from flywheel.predictor import Predictor, load_model
from flywheel.registry import MODEL_FILE, Registry, RegistryError
from flywheel.storage import StoreError, StoreUnavailable

if TYPE_CHECKING:
    import pandas as pd


log = logging.getLogger(__name__)


# The models loaded in a look's scoring process (`Remote`), by version.
_LOADED: dict[str, Predictor] = {}


def _load_in_scorer(version: str, raw: bytes, numeric: list[str], categorical: list[str]) -> None:
    """Load a version's model in the scoring process, for `_outputs_in_scorer`."""
    _LOADED[version] = Predictor(load_model(raw), numeric, categorical)


def _outputs_in_scorer(version: str, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """A loaded version's answers to `frame`, in the scoring process (on one thread, as
    `analysis._skew` scores: a few hundred rows)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _LOADED[version].outputs(frame)


@dataclass(frozen=True)
class Remote:
    """A version's model loaded and run in a process of its own (a look with `--workers`):
    unpickling it imports scikit-learn, a second of CPU that would otherwise hold up the
    look's own process, which needs only its answers to a few hundred rows."""

    process: Executor
    version: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    loaded: Future[None]

    @classmethod
    def load(cls, process: Executor, version: str, raw: bytes, contract: Contract) -> Remote:
        """Start loading `raw` (a model file) in `process`."""
        numeric, categorical = list(contract.numeric), list(contract.categorical)
        loaded = process.submit(_load_in_scorer, version, raw, numeric, categorical)
        return cls(process, version, tuple(numeric), tuple(categorical), loaded)

    @property
    def columns(self) -> tuple[str, ...]:
        """Input columns in order."""
        return (*self.numeric, *self.categorical)

    def outputs(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """The model's answers, as `Predictor.outputs`; a model that did not load raises its
        error here."""
        self.loaded.result()
        return self.process.submit(_outputs_in_scorer, self.version, frame).result()


class Deferred:
    """A version's model loaded the first time it is asked for answers."""

    def __init__(self, contract: Contract, load: Callable[[], Scorer]) -> None:
        self.columns = (*contract.numeric, *contract.categorical)
        self._load = load
        self._loaded: Scorer | None = None

    def outputs(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        """The model's answers, as `Predictor.outputs`, loading it first if need be."""
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded.outputs(frame)


def load_reference(
    registry: Registry,
    source: batches.BatchSource,
    version: str,
    scorer: Executor | None = None,
) -> VersionReference:
    """A version's contract, its own evaluation (as the candidate it was) and its model
    (loaded in the `scorer` process, if one is given), with the rows of `source` its
    contract was inferred from."""
    manifest = registry.manifest(version)
    contract_bytes = registry.read(version, "contract.json")
    contract = Contract.from_json(contract_bytes)
    evaluated, evaluation_bytes = None, None
    try:
        evaluation_bytes = registry.read(version, "evaluation.json")
        evaluated = Evaluation.model_validate_json(evaluation_bytes)
    except (RegistryError, ValidationError) as error:
        log.warning("%s has no usable evaluation.json (%s): no offline comparison", version, error)
    model_bytes = registry.read(version, MODEL_FILE)
    rescored = read_rescored(registry.store, registry.model_name, version)

    def load() -> Scorer:
        if scorer is not None:
            return Remote.load(scorer, version, model_bytes, contract)
        return Predictor(
            load_model(model_bytes), list(contract.numeric), list(contract.categorical)
        )

    # A re-look whose skew check finds its rows re-scored already needs no model (and
    # scikit-learn's imports are most of a small look): load it when first asked.
    predictor = Deferred(contract, load) if rescored.known else load()
    newest, outputs, direct_loss = None, None, None
    why = "the version has no evaluation to name rows it never trained on"
    if contract.task != "binary" and evaluated is not None:
        newest, why = newest_rows(source, contract, evaluated.newest_batch)
    if newest is not None and evaluated is not None:
        outputs = newest_outputs(rescored, predictor, contract, evaluated.newest_batch, newest)
        if contract.task == "regression":
            direct_loss, why = fit_direct_loss(newest, outputs[:, 0], contract)
    rows = reference_rows(source, contract)
    return VersionReference(
        version=version,
        created_at=datetime.fromisoformat(manifest.created_at),
        contract=contract,
        evaluation=evaluated.candidate if evaluated else None,
        predictor=predictor,
        rows=rows,
        newest_outputs=outputs,
        direct_loss=direct_loss,
        no_direct_loss=why,
        fingerprint=reference_fingerprint(
            version,
            [manifest.created_at, contract_bytes, evaluation_bytes, model_bytes, why],
            [rows, newest],
        ),
        rescored=rescored,
    )


def newest_rows(
    source: batches.BatchSource, contract: Contract, batch: str
) -> tuple[pd.DataFrame | None, str]:
    """The rows of `batch` (a version's evaluation's newest, which it never trained on), or None
    and why they cannot be had."""
    try:
        found = {b.day.isoformat(): b for b in source.available()}.get(batch[:10])
        if found is None:
            return None, f"its evaluation's newest batch {batch} is gone from the source"
        frame = batches.parse(found.name, source.store.read(found.key))
    except (StoreError, BatchError) as error:
        if isinstance(error, StoreUnavailable):
            raise
        return None, f"its evaluation's newest batch {batch} cannot be read ({error})"
    return frame.reset_index(drop=True), ""


def newest_outputs(
    rescored: Rescored, scorer: Scorer, contract: Contract, batch: str, frame: pd.DataFrame
) -> npt.NDArray[np.float64]:
    """The model's answers to its evaluation's newest batch, kept with the re-scored rows: a
    multiclass or regression version's re-look then loads no model for them either."""
    width = contract.problem.width
    columns = [*contract.numeric, *contract.categorical]
    inputs = list(frame[columns].itertuples(index=False, name=None))
    return rescored.outputs(
        batch_rows(batch, inputs), width, lambda missing: scorer.outputs(frame.iloc[missing])
    )


def fit_direct_loss(
    frame: pd.DataFrame, predictions: npt.NDArray[np.float64], contract: Contract
) -> tuple[DirectLoss | None, str]:
    """A regression's error models, fitted on its evaluation's newest batch; or None and why."""
    import numpy as np

    labels = contract.problem.targets(frame[contract.label])
    keep = np.isfinite(labels)
    if keep.sum() < MIN_REFERENCE_ROWS:
        return None, (
            f"its evaluation's newest batch has {int(keep.sum())} labelled rows; direct loss "
            f"estimation needs {MIN_REFERENCE_ROWS}"
        )
    return DirectLoss.fit(
        frame[keep].reset_index(drop=True),
        labels[keep],
        predictions[keep],
        list(contract.numeric),
        list(contract.categorical),
    ), ""


def reference_rows(source: batches.BatchSource, contract: Contract) -> pd.DataFrame | None:
    """The batches of `source` the contract was inferred from, or None (and the tests fall
    back to the contract's bins) when any of them cannot be read."""
    import pandas as pd

    try:
        files = {b.day.isoformat(): b for b in source.available()}
        chosen = [files[name[:10]] for name in contract.batches if name[:10] in files]
        if len(chosen) < len(contract.batches):
            raise BatchError(f"{len(contract.batches) - len(chosen)} of them are gone")
        frames = [batches.parse(b.name, source.store.read(b.key)) for b in chosen]
    except (StoreError, BatchError) as error:
        if isinstance(error, StoreUnavailable):
            raise
        log.warning("reference batches unreadable (%s): testing against the contract's bins", error)
        return None
    return pd.concat(frames, ignore_index=True) if frames else None
