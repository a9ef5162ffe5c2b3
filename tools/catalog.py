"""The pinned version of every Go tool Flywheel's tests and checks use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class GoTool:
    """One binary and how to build it.

    `install` is a plain `go install pkg@version`. `in-module` builds inside a
    copy of the module, for modules whose go.mod has replace directives that
    `go install` refuses.
    """

    name: str
    module: str
    version: str
    package: str
    how: Literal["install", "in-module"] = "install"
    ldflags: tuple[str, ...] = ()
    license: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Cache folder name: the binary and its version."""
        return f"{self.name}-{self.version}"


SEAWEEDFS = GoTool(
    name="weed",
    module="github.com/seaweedfs/seaweedfs",
    # SeaweedFS publishes no semver tags on the module proxy; this is 4.53 (2026-11-09).
    version="v0.0.0-20261109003541-7506e5f91cd6",
    package="./weed",
    how="in-module",
    license="Apache-2.0",
)

TOOLS: dict[str, GoTool] = {tool.name: tool for tool in (SEAWEEDFS,)}
