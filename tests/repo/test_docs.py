"""The README and the docs site keep their promises: a short front door, every page in
the nav, and reference pages that match the code they are generated from."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from flywheel.config import OTHER_VARIABLES, Settings
from tools import docs

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


class _Loader(yaml.SafeLoader):
    """mkdocs.yml's `!!python/name:` tags name functions; the tests only read the nav."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def _nav_pages(entries: list[Any]) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


@pytest.mark.parametrize("path", list(docs.PAGES), ids=lambda p: p.name)
def test_generated_pages_are_current(path: Path) -> None:
    # given the code a page is generated from, when it is rendered again, then nothing changed
    assert path.read_text() == docs.PAGES[path](), f"{path} is stale: run `make docs-generate`"


def test_every_docs_page_is_in_the_nav_once() -> None:
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)
    nav = _nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    # mkdocs --strict then fails on a page left out, a broken link or a missing anchor.
    assert config["strict"] is True
    assert all(v == "warn" for group in config["validation"].values() for v in group.values())


def test_the_readme_is_a_short_front_door() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "make run" in readme and "make test" in readme


def test_the_readme_names_every_library_module() -> None:
    readme = (REPO / "README.md").read_text()
    library = REPO / "src" / "flywheel"
    names = {p.stem for p in library.glob("*.py") if not p.name.startswith("_")}
    names |= {p.name for p in library.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(n for n in names if f"`{n}`" not in readme and f"`{n}/`" not in readme)
    assert not missing, f"README's What is where does not name {missing}"


def test_the_configuration_page_lists_every_other_flywheel_variable() -> None:
    page = (DOCS / "configuration.md").read_text()
    missing = sorted(name for name in OTHER_VARIABLES if f"`{name}`" not in page)
    assert not missing, f"docs/configuration.md does not name {missing}"


def _leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        # An optional section (`X | None`) is still a section; a list or map of them is a key.
        union = typing.get_origin(info.annotation) in (typing.Union, types.UnionType)
        options = typing.get_args(info.annotation) if union else (info.annotation,)
        sections = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
        path = f"{prefix}{name}"
        paths += _leaf_paths(sections[0], f"{path}.") if sections else [path]
    return paths


def test_the_configuration_reference_has_every_key() -> None:
    page = (DOCS / "reference" / "configuration.md").read_text()
    keys = set(re.findall(r"^\| `([^`]+)` \|", page, re.M))
    missing = [path for path in _leaf_paths(Settings) if path not in keys]
    assert not missing, missing


def test_the_layer_table_is_top_layer_first(tmp_path: Path) -> None:
    # given a contract with independent and non-independent layers
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        "[tool.importlinter]\nroot_package = 'p'\n"
        "[[tool.importlinter.contracts]]\nname = 'Layers'\ntype = 'layers'\n"
        "containers = ['p']\nlayers = ['cli', 'a | b', 'c : d', 'base']\n"
        "[[tool.importlinter.contracts]]\nname = 'No cycles'\ntype = 'acyclic_siblings'\n"
        "ancestors = ['p']\n"
    )
    # when it is rendered
    page = docs.render_layers(pyproject)
    # then the top layer comes first, and each row says what passes between its modules
    rows = [line for line in page.splitlines() if re.match(r"\| \d", line)]
    assert rows == [
        "| 4 | `cli` |  |",
        "| 3 | `a`, `b` | independent: none imports another |",
        "| 2 | `c`, `d` | may import each other |",
        "| 1 | `base` |  |",
    ]
    assert "- **No cycles** (`acyclic_siblings`): checked under `p`." in page
