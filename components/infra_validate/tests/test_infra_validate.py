from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from kfp import dsl

from flywheel.components.infra_validate.component import infra_validate
from flywheel.predictor import InfraValidationError
from harness.steps import Ingested, Trained, artifact


def test_logic_accepts_a_good_model_and_refuses_a_corrupt_one(
    trained: Trained, tmp_path: Path
) -> None:
    window = artifact(dsl.Dataset, trained.window.path)
    usage = artifact(dsl.Metrics, tmp_path / "usage")
    infra_validate.python_func(
        config=trained.config, model=artifact(dsl.Model, trained.model), window=window, usage=usage
    )
    (tmp_path / "bad").write_bytes(trained.model.read_bytes()[:100])
    with pytest.raises(InfraValidationError, match="cannot load the model"):
        infra_validate.python_func(
            config=trained.config,
            model=artifact(dsl.Model, tmp_path / "bad"),
            window=window,
            usage=usage,
        )


def test_under_kfp_local_a_corrupt_model_fails_the_step(
    window: Ingested,
    run_component: Callable[..., Path],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "bad").write_bytes(b"\x80\x04corrupt")
    with pytest.raises(RuntimeError, match=r"Inner task failed: .*'infra-validate'"):
        run_component(
            infra_validate,
            artifacts={
                "model": artifact(dsl.Model, tmp_path / "bad"),
                "window": artifact(dsl.Dataset, window.path),
            },
            config=window.config,
        )
    # kfp.local's error names only the task; the step's log says why it failed, so
    # that an ImportError or a bad argument in the step cannot pass for this.
    captured = capfd.readouterr()
    log = captured.out + captured.err
    assert (
        "flywheel.predictor.InfraValidationError: the serving code path cannot load the model"
        in log
    )
