"""Lay the flywheel package out as setuptools installs it, in symbolic links, for the checks.

components/ and pipelines/ are installed as flywheel.components and flywheel.pipelines
(pyproject's package-dir). The editable install maps them with an import hook, which mypy
and import-linter never run: both look for packages on disk. `make lint` lays the package
out here first and points them at it.

python -m tools.layout build/installed
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lay_out(target: Path, repo: Path = REPO) -> list[Path]:
    """Replace `target` with links placing each package where an install puts it; return
    the top-level packages laid out."""
    package_dir: dict[str, str] = tomllib.loads((repo / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]["package-dir"]
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    # The root mapping: each top-level package's entries, one link each, so that the
    # mapped subpackages can be placed beside them.
    source = repo / package_dir.get("", ".")
    tops = sorted(p.parent for p in source.glob("*/__init__.py"))
    for top in tops:
        (target / top.name).mkdir()
        for entry in sorted(top.iterdir()):
            if entry.name != "__pycache__":
                _link(entry, target / top.name / entry.name)
    for name, folder in sorted(package_dir.items()):
        if name:
            _link(repo / folder, target.joinpath(*name.split(".")))
    return [target / top.name for top in tops]


def _link(source: Path, link: Path) -> None:
    link.symlink_to(os.path.relpath(source.resolve(), link.parent.resolve()))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    lay_out(Path(sys.argv[1]))
