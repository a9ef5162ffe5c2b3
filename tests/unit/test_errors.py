"""Every error Flywheel defines shares one base, so the CLI reports each in one line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import flywheel
from flywheel.errors import FlywheelError

# Error classes that may stand outside FlywheelError, each with the reason. None so far.
ALLOWED: dict[str, str] = {}


def _error_classes() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(flywheel.__path__, "flywheel."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # importing one runs the CLI
            continue
        module = importlib.import_module(info.name)
        found += [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and issubclass(obj, BaseException)
            and obj.__module__ == module.__name__
        ]
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _name(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


ERRORS = _error_classes()


def test_the_walk_finds_the_errors_of_every_layer() -> None:
    names = {_name(c) for c in ERRORS}
    assert {
        "flywheel.errors.FlywheelError",
        "flywheel.config.ConfigError",
        "flywheel.storage.ObjectNotFound",
        "flywheel.registry.AliasConflict",
        "flywheel.rollout.state.RolloutError",
        "flywheel.serving.model.ModelUnavailable",
    } <= names
    assert set(ALLOWED) <= names


@pytest.mark.parametrize(
    "error",
    [c for c in ERRORS if _name(c) not in ALLOWED],
    ids=_name,
)
def test_every_error_is_a_flywheel_error(error: type[BaseException]) -> None:
    assert issubclass(error, FlywheelError), f"{_name(error)} does not subclass FlywheelError"
