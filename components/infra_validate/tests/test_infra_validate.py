from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from kfp import dsl

from flywheel import tasks
from flywheel.components.infra_validate.component import infra_validate
from flywheel.config import Settings
from flywheel.predictor import InfraValidationError


def test_logic_accepts_a_good_model_and_refuses_a_corrupt_one(
    small_settings: Callable[..., Settings], make_batches: Callable[..., list[str]], tmp_path: Path
) -> None:
    settings = small_settings()
    make_batches(settings, 3)
    c = settings.to_json()
    tasks.ingest(c, "", tmp_path / "w")
    tasks.train(c, tmp_path / "w", tmp_path / "m", tmp_path / "h")
    window = dsl.Dataset(name="w", uri=str(tmp_path / "w"), metadata={})
    infra_validate.python_func(
        config=c, model=dsl.Model(name="m", uri=str(tmp_path / "m"), metadata={}), window=window
    )
    (tmp_path / "bad").write_bytes((tmp_path / "m").read_bytes()[:100])
    with pytest.raises(InfraValidationError, match="cannot load the model"):
        infra_validate.python_func(
            config=c,
            model=dsl.Model(name="m", uri=str(tmp_path / "bad"), metadata={}),
            window=window,
        )


def test_under_kfp_local_a_corrupt_model_fails_the_step(
    small_settings: Callable[..., Settings],
    make_batches: Callable[..., list[str]],
    run_component: Callable[..., Path],
    tmp_path: Path,
) -> None:
    settings = small_settings()
    make_batches(settings, 3)
    tasks.ingest(settings.to_json(), "", tmp_path / "w")
    (tmp_path / "bad").write_bytes(b"\x80\x04corrupt")
    with pytest.raises(RuntimeError, match="FAILURE"):
        run_component(
            infra_validate,
            artifacts={
                "model": (dsl.Model, tmp_path / "bad"),
                "window": (dsl.Dataset, tmp_path / "w"),
            },
            config=settings.to_json(),
        )
