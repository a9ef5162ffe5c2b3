"""The peers `make bench-monitor` times beside `flywheel monitor`, each run in its own virtualenv.

    .venv-<peer>/bin/python -m benchmarks.monitor_peers <peer> <spec.json>

The spec names the day's prediction files, the reference files and the features (see
`benchmarks.monitor.peer_spec`). The peer reads every file with its own pyarrow, runs its
monitoring as its documentation shows, and prints one JSON line: the rows read, the seconds
spent reading and analysing, and what it found. Only the standard library is imported at the
top: the peers' virtualenvs hold their own pandas and pyarrow, not Flywheel.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

TIMESTAMP = "timestamp"
SCORE = "score"
PREDICTED = "predicted"


def served(spec: dict[str, Any], *, scores: bool) -> Any:
    """The logged rows as a pandas frame: the features under their own names, and with `scores`
    the logged time and P(positive class)."""
    import pandas as pd
    import pyarrow.dataset as ds

    columns = {f"in.{name}": name for name in spec["numeric"] + spec["categorical"]}
    if scores:
        columns |= {spec["time"]: TIMESTAMP, spec["score"]: SCORE}
    table = ds.dataset(spec["files"], format="parquet").to_table(columns=list(columns))
    frame = table.rename_columns(list(columns.values())).to_pandas()
    if scores:
        frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], unit="s")
        frame[PREDICTED] = (frame[SCORE] >= spec["threshold"]).astype("int64")
    return frame


def reference(path: str, spec: dict[str, Any]) -> Any:
    """A reference file, its numeric features as the logs type them (float64)."""
    import pandas as pd

    frame = pd.read_parquet(path)
    frame[spec["numeric"]] = frame[spec["numeric"]].astype("float64")
    return frame.rename(columns={spec["time_column"]: TIMESTAMP})


def evidently(spec: dict[str, Any]) -> dict[str, Any]:
    """Evidently's DataDriftPreset on the features against the version's reference."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    started = time.perf_counter()
    current = served(spec, scores=False)
    read = time.perf_counter() - started
    features = spec["numeric"] + spec["categorical"]
    past = reference(spec["reference"], spec)[features]
    definition = DataDefinition(
        numerical_columns=spec["numeric"], categorical_columns=spec["categorical"]
    )
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(past, data_definition=definition),
    )
    metrics = snapshot.dict()["metrics"]
    count = next(m["value"] for m in metrics if m["metric_name"].startswith("DriftedColumnsCount"))
    return {
        "rows": len(current),
        "read_s": read,
        "analyse_s": time.perf_counter() - started - read,
        "found": f"{count['count']:.0f} of {len(features)} features drifted",
    }


def nannyml(spec: dict[str, Any]) -> dict[str, Any]:
    """NannyML's univariate drift against the version's reference, and CBPE (ROC AUC, accuracy)
    of the logged scores, calibrated on the scored reference."""
    import nannyml as nml

    started = time.perf_counter()
    current = served(spec, scores=True)
    read = time.perf_counter() - started
    features = spec["numeric"] + spec["categorical"]
    # One chunk a day: the reference's daily batches set the thresholds, the logged day is one.
    drift = nml.UnivariateDriftCalculator(
        column_names=features,
        timestamp_column_name=TIMESTAMP,
        chunk_period="D",
        continuous_methods=["kolmogorov_smirnov", "jensen_shannon"],
        categorical_methods=["chi2", "jensen_shannon"],
    )
    drift.fit(reference(spec["reference"], spec))
    drifted = drift.calculate(current).filter(period="analysis").to_df()
    # Its columns are (feature, method, figure): a feature drifted if any method alerts.
    alerts = sorted({c[0] for c in drifted.columns if c[2] == "alert" and drifted[c].any()})
    scored = reference(spec["scored_reference"], spec)
    scored[PREDICTED] = (scored[SCORE] >= spec["threshold"]).astype("int64")
    cbpe = nml.CBPE(
        y_pred_proba=SCORE,
        y_pred=PREDICTED,
        y_true=spec["label"],
        timestamp_column_name=TIMESTAMP,
        metrics=["roc_auc", "accuracy"],
        problem_type="classification_binary",
        chunk_period="D",
    )
    cbpe.fit(scored)
    estimated = cbpe.estimate(current).filter(period="analysis").to_df()
    value = {m: float(estimated[(m, "value")].iloc[0]) for m in ("roc_auc", "accuracy")}
    return {
        "rows": len(current),
        "read_s": read,
        "analyse_s": time.perf_counter() - started - read,
        "found": f"{len(alerts)} of {len(features)} features drifted; CBPE "
        + ", ".join(f"{m} {v:.3f}" for m, v in value.items()),
    }


PEERS = {"evidently": evidently, "nannyml": nannyml}


def main(argv: list[str]) -> int:
    peer, spec = argv[0], json.loads(Path(argv[1]).read_text())
    # Both warn about chunks and dtypes on every call; the figures are what is measured.
    warnings.simplefilter("ignore")
    print(json.dumps({"peer": peer, **PEERS[peer](spec)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
