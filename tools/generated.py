"""Files generated from others, written by a make target and checked by the tests."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(path: Path, text: str, target: str, argv: list[str]) -> int:
    """Write `text` to `path`, or with `--check` in argv, fail if it differs."""
    if "--check" in argv:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is stale: run `make {target}`", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0
