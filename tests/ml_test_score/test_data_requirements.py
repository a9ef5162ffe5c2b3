"""The ML Test Score's data items on privacy and new features, automated on whole runs.

Breck et al. 2017, section II (Tests for features and data): "The data pipeline has
appropriate privacy controls" (Data 5) and "New features can be added quickly" (Data 6).
Each test runs every pipeline step in this process (runs.run_in_process) on a small
project. The contract's column tags and allowed sources, the pii policy at config load and
the source check at validate are covered on their own in tests/unit/config/test_contract.py,
tests/unit/test_contract.py, test_validation.py, test_batches.py and test_tasks.py.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import OrdinalEncoder

from flywheel import batches, runs, synthetic
from flywheel.config import Settings
from flywheel.predictor import dump_model, load_model
from flywheel.registry import MODEL_FILE, Registry
from flywheel.serving.model import FlywheelModel
from flywheel.serving.requests import BadRequest
from flywheel.storage import LocalStore

SALT = "test-salt-not-a-secret"
LINEAR = "sklearn.linear_model.LogisticRegression"
# Social security numbers as a person would recognise them: 900-dd-dddd.
SSN = re.compile(rb"\b9\d\d-\d\d-\d{4}\b")


def _ssn(day: date, rows: int) -> list[str]:
    return [f"9{day.day:02d}-{i % 100:02d}-{i:04d}" for i in range(rows)]


def _write(
    settings: Settings, days: list[date], **add: Callable[[date, pd.DataFrame], object]
) -> None:
    """The generator's batches for `days`, each with the columns `add` computes."""
    source = batches.BatchSource(LocalStore(settings.data.source))
    for day in days:
        frame = synthetic.generate_day(day, settings.data.generator)
        for name, column in add.items():
            frame[name] = column(day, frame)
        source.write(day, frame)


def _texts(root: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file under `root` as bytes a grep can read: Parquet as CSV, gzip unpacked, and
    zlib too (joblib's compress=3, so the models' pickles), each kept as is besides."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        if raw[:4] == b"PAR1":
            raw = pd.read_parquet(io.BytesIO(raw)).to_csv(index=False).encode()
        elif raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        elif raw[:1] == b"x":
            with contextlib.suppress(zlib.error):  # or text that happens to start with an x
                raw += b"\n" + zlib.decompressobj().decompress(raw)
        yield path, raw


def test_the_grep_sees_into_a_compressed_model_file(tmp_path: Path) -> None:
    # given an encoder fitted on the numbers, saved as the pipeline saves its models
    numbers = _ssn(date(2026, 1, 14), 3)
    encoder = OrdinalEncoder().fit(pd.DataFrame({"ssn": numbers}))
    raw = dump_model(encoder)
    assert not SSN.search(raw)  # (compressed, a plain grep misses them)
    (tmp_path / "baselines").mkdir()
    (tmp_path / "model.joblib").write_bytes(raw)
    (tmp_path / "baselines" / "linear.joblib").write_bytes(raw)
    (tmp_path / "notes.txt").write_bytes(b"xylophone")
    # then the grep the privacy test uses finds them in both
    found = {path.name for path, text in _texts(tmp_path) if SSN.search(text)}
    assert found == {"model.joblib", "linear.joblib"}


def test_a_planted_pii_column_reaches_no_file_of_a_run_nor_the_prediction_log(
    small_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given batches carrying social security numbers, tagged pii and hashed at ingest
    monkeypatch.setenv("FLYWHEEL_PII_SALT", SALT)
    settings = small_settings(
        "contract.columns.ssn.pii=true",
        "contract.columns.ssn.source=crm",
        "contract.pii=hash",
        # any model will do, and a linear one costs a sixth of the trees' CPU
        f"model.estimator={LINEAR}",
    )
    days = synthetic.days(settings.data.generator.start_date, 5)
    _write(settings, days, ssn=lambda day, frame: _ssn(day, len(frame)))
    # (the grep below finds them where they are)
    assert all(SSN.search(text) for _, text in _texts(Path(settings.data.source)))
    # when the pipeline runs and the version it registered serves a request
    run = runs.run_in_process(settings, tmp_path / "work", run_id="r1", git_commit="abc123")
    assert run.version == "v1"
    model = FlywheelModel(
        model_version=run.version, store_uri=settings.storage.uri, log_predictions="true"
    )
    model.load()
    newest = pd.read_parquet(Path(settings.data.source, f"{days[-1]}.parquet")).head(3)
    features = list(settings.features.columns)
    rows = json.loads(newest[features].to_json(orient="records"))
    model.score({"jsonData": rows})
    # and a client sends a person's number along with the features
    with pytest.raises(BadRequest) as refused:
        model.score({"jsonData": [{**rows[0], "ssn": newest["ssn"].iloc[0]}]})
    model.close()
    # then the request is refused naming the field, not its value
    assert "ssn" in str(refused.value) and not SSN.search(str(refused.value).encode())
    # and no file the run wrote, no file of the registered version and no log holds one
    written = [tmp_path / "work", Path(settings.storage.uri)]
    assert (Path(settings.storage.uri) / "predictions").is_dir()
    leaks = [str(path) for root in written for path, text in _texts(root) if SSN.search(text)]
    assert leaks == []
    # and the window holds the salted HMAC-SHA256 of each number, not the number
    window = pd.read_parquet(tmp_path / "work" / "window" / f"{days[0]}.parquet")
    raw = _ssn(days[0], len(window))
    expected = [hmac.new(SALT.encode(), v.encode(), hashlib.sha256).hexdigest() for v in raw]
    assert window["ssn"].tolist() == expected
    # and the contract stored with the version records the tag
    contract = json.loads(Registry.from_settings(settings).read("v1", "contract.json"))
    assert contract["columns"]["ssn"] == {"pii": True, "sensitive": False, "source": "crm"}
    assert "ssn" not in contract["numeric"] and "ssn" not in contract["categorical"]


def test_a_new_feature_is_a_configuration_change_the_report_shows(
    project: Settings, tmp_path: Path
) -> None:
    # given the project's production model (v1), trained on the generator's nine features
    assert Registry.from_settings(project).resolve("production") == "v1"
    # when five new days of batches gain a column and `features:` lists it
    start = project.data.generator.start_date
    _write(
        project,
        synthetic.days(date.fromordinal(start.toordinal() + 5), 5),
        debt_to_income=lambda _, frame: (frame["loan_amount"] / frame["income"]).round(4),
    )
    changed = json.loads(project.to_json())
    changed["features"]["numeric"].append("debt_to_income")
    # a linear model costs a sixth of the trees' CPU; the gate is not what is tested here
    changed["model"] = {**changed["model"], "estimator": LINEAR, "params": {"max_iter": 200}}
    changed["promotion"]["max_regression"] = 0.5
    grown = Settings.from_json(json.dumps(changed))
    run = runs.run_in_process(grown, tmp_path / "work", run_id="r2")
    # then the next run validates, trains on it and registers it
    assert run.version == "v2"
    registry = Registry.from_settings(grown)
    model = load_model(registry.read("v2", MODEL_FILE))
    assert "debt_to_income" in list(model.feature_names_in_)
    contract = json.loads(registry.read("v2", "contract.json"))
    assert "debt_to_income" in contract["numeric"]
    # and the validation report shows the contract's change against production's
    report = registry.read("v2", "validation.md").decode()
    section = report.split("## Contract changes", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"\| debt_to_income \| added \| – \| numeric, [0-9.]+\.\.[0-9.]+", section)
    assert report.startswith("# Data validation: PASSED")
    # and the model uses it: scores move when only the new feature does
    holdout = pd.read_parquet(tmp_path / "work" / "holdout.parquet").head(200)
    shifted = holdout.assign(debt_to_income=holdout["debt_to_income"] * 4)
    columns = list(model.feature_names_in_)
    moved = np.abs(
        model.predict_proba(shifted[columns])[:, 1] - model.predict_proba(holdout[columns])[:, 1]
    )
    assert moved.max() > 0.01
