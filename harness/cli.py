"""Run the real `flywheel` entry point in this process, as a person would type it."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from flywheel.cli import main
from flywheel.config import Settings


@dataclass
class Result:
    """What one command printed and its exit code."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


Flywheel = Callable[..., Result]


@pytest.fixture
def flywheel(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Flywheel]:
    """`flywheel(*args, env={...})` -> Result; the SIGTERM handler main installs is undone."""
    handler = signal.getsignal(signal.SIGTERM)

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "argv", ["flywheel", *args])
        capsys.readouterr()
        try:
            main()
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        else:
            code = 0
        captured = capsys.readouterr()
        for name in env or {}:
            monkeypatch.delenv(name)
        return Result(code, captured.out, captured.err)

    yield run
    signal.signal(signal.SIGTERM, handler)


def table_rows(printed: str) -> list[list[str]]:
    """The cells of the table titled "steps", row by row; it must be the last thing printed."""
    lines = printed.rstrip("\n").splitlines()
    assert lines[-1].startswith("└"), lines[-1]
    title = max(i for i, line in enumerate(lines) if line.strip() == "steps")
    rows = []
    for line in lines[title + 1 :]:
        cells = [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        if cells:
            rows.append(cells)
    return rows


def write_config(settings: Settings, path: Path) -> Path:
    """The settings as a flywheel.yaml a person would pass with -c."""
    path.write_text(yaml.safe_dump(json.loads(settings.to_json())))
    return path


def own_table(tmp_path: Path, label: list[object], **model: object) -> Path:
    """A project of one's own: a table of 240 rows with one numeric and one categorical feature and `label` repeated,
    split into four daily batches, and its flywheel.yaml."""
    rng = np.random.default_rng(0)
    labels = (label * (240 // len(label) + 1))[:240]
    table = pd.DataFrame(
        {"size": rng.normal(size=240), "colour": rng.choice(["red", "blue"], 240), "y": labels}
    )
    table.to_csv(tmp_path / "table.csv", index=False)
    config = {
        "model_name": "own",
        "data": {"source": str(tmp_path / "batches"), "window_days": 4},
        "features": {"label": "y", "numeric": ["size"], "categorical": ["colour"]},
        "contract": {"min_rows": 20},
        "model": {"params": {}, **model},
        "storage": {"uri": str(tmp_path / "store")},
    }
    path = tmp_path / "flywheel.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fresh_environment() -> dict[str, str]:
    """This process's environment as a person's fresh shell has it: no FLYWHEEL_ variable
    and no activated virtualenv, so a command reads only its project's flywheel.yaml."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "VIRTUAL_ENV"))}
