"""Dotted paths to scikit-learn estimators: their form, and whether one exists in the installed
scikit-learn, read without importing it."""

from __future__ import annotations

import re
from pathlib import Path


def sklearn_path(value: str) -> str:
    """`value` if it is a dotted path inside sklearn; a ValueError naming the form if not."""
    if not re.fullmatch(r"sklearn(\.[A-Za-z_][A-Za-z0-9_]*)+", value):
        raise ValueError(
            "must be a dotted path inside sklearn, e.g. sklearn.linear_model.LogisticRegression"
        )
    return value


def sklearn_name_exists(path: str) -> bool:
    """Whether `sklearn.module.Name` names something in the installed scikit-learn, read from
    the module's source rather than imported: importing scikit-learn takes seconds, too long
    for every configuration load. Undecidable cases (no scikit-learn here, a module that builds
    its names at run time) pass; `training.estimator_class` imports and checks them at train."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return True
    module, _, name = path.rpartition(".")
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*module.split(".")[1:])
    source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    if not source.is_file():
        return False
    names: set[str] = set()
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return name in names or "__getattr__" in names
