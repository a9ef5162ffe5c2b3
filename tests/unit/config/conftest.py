"""What the configuration tests share: the error a file is refused with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flywheel.config import ConfigError, load_settings


@pytest.fixture
def refusal(tmp_path: Path) -> Callable[[str], str]:
    """The ConfigError a flywheel.yaml holding `text` is refused with, its path relative."""

    def refuse(text: str) -> str:
        path = tmp_path / "f.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as error:
            load_settings(path, env={})
        return str(error.value).replace(str(tmp_path) + "/", "")

    return refuse
