"""The repository's promises about itself: components, lock files, pins and make targets."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from flywheel import predictor
from tools import layout

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "flywheel"
UNIT = REPO / "tests" / "unit"


def _pins(lock: str) -> dict[str, str]:
    text = (REPO / "requirements" / lock).read_text()
    return {
        m.group(1).lower(): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", text, re.M)
    }


def test_every_component_folder_is_complete_and_packaged() -> None:
    packages = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = sorted(p.parent for p in (REPO / "components").glob("*/component.py"))
    assert len(folders) == 9
    for folder in folders:
        assert f"flywheel.components.{folder.name}" in packages, folder
        assert (folder / "README.md").is_file(), folder
        assert list((folder / "tests").glob("test_*.py")), folder


def test_the_checks_read_every_package_where_it_is_installed(tmp_path: Path) -> None:
    # given what pyproject installs, and the checks' settings
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools, mypy = pyproject["tool"]["setuptools"], pyproject["tool"]["mypy"]
    # when the package is laid out for mypy and import-linter, as `make lint` does
    assert "INSTALLED := build/installed" in (REPO / "Makefile").read_text()
    installed = tmp_path / "build" / "installed"
    layout.lay_out(installed)
    # then every installed package stands there under its installed name
    missing = [
        name
        for name in setuptools["packages"]
        if not installed.joinpath(*name.split("."), "__init__.py").is_file()
    ]
    assert not missing, missing
    # and mypy checks each package mapped from outside src/ there
    for name in setuptools["package-dir"]:
        if name:
            assert "/".join(["build", "installed", *name.split(".")]) in mypy["files"], name


def test_every_library_package_is_packaged() -> None:
    packages = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    src = REPO / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in src.glob("flywheel/**/__init__.py")}
    assert found <= packages, found - packages


def test_the_uis_templates_and_static_files_are_package_data() -> None:
    # The components image installs the package (`pip install .`), not the source tree: the UI
    # finds its templates and static files only if package-data names them.
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["flywheel.ui"]
    ui = SRC / "ui"
    files = {p.relative_to(ui) for p in ui.rglob("*") if p.is_file() and p.suffix != ".py"}
    files = {f for f in files if "__pycache__" not in f.parts}
    assert files and all(any(f.match(pattern) for pattern in patterns) for f in files), files


@pytest.mark.parametrize(
    "package", ["numpy", "scikit-learn", "scipy", "pandas", "joblib", "pyarrow"]
)
def test_training_and_serving_locks_agree_on_what_pickles_depend_on(package: str) -> None:
    versions = {lock: _pins(lock)[package] for lock in ("dev.txt", "pipelines.txt", "serving.txt")}
    assert len(set(versions.values())) == 1, versions


def test_infra_validation_pins_match_the_serving_lock() -> None:
    serving = _pins("serving.txt")
    assert {k: serving[k] for k in predictor.SERVING_PINS} == predictor.SERVING_PINS


def test_serving_uses_the_last_apache_licensed_seldon_core() -> None:
    serving, pipelines = _pins("serving.txt"), _pins("pipelines.txt")
    assert serving["seldon-core"] == "1.17.1"
    assert int(serving["protobuf"].split(".")[0]) < 4
    assert int(pipelines["protobuf"].split(".")[0]) >= 6
    assert "seldon-core" not in pipelines and "kfp" not in serving


def test_the_makefile_offers_the_promised_targets() -> None:
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.M))
    assert {
        "help",
        "setup",
        "run",
        "test",
        "lint",
        "format",
        "compile",
        "bench",
        "bench-pipeline",
        "clean",
        "tools",
    } <= targets


def test_ci_runs_make_test() -> None:
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_make_test_starts_the_known_slow_modules_first() -> None:
    from harness.schedule import SLOW_MODULES, slowest_first

    # every module named still exists, and xdist keeps the collection order conftest.py sets
    assert [m for m in SLOW_MODULES if not (REPO / m).is_file()] == []
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^PYTEST := .*--dist loadfile --no-loadscope-reorder", makefile, re.M)

    class Item:
        def __init__(self, nodeid: str) -> None:
            self.nodeid = nodeid

    items = [Item(n) for n in ("tests/unit/test_a.py::t", "tests/e2e/test_make_run.py::t")]
    items += [
        Item("tests/integration/test_rollout_local.py::t[1]"),
        Item("tests/unit/test_b.py::t"),
    ]
    order = [i.nodeid for i in slowest_first(items)]
    assert order == [
        "tests/integration/test_rollout_local.py::t[1]",
        "tests/e2e/test_make_run.py::t",
        "tests/unit/test_a.py::t",
        "tests/unit/test_b.py::t",
    ]


def _holds_code(path: Path) -> bool:
    """Whether a module defines anything: a function, a class or an assignment."""
    code = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    return any(isinstance(node, code) for node in ast.walk(ast.parse(path.read_text())))


def _mirror(module: Path) -> Path | None:
    """The unit test module of a library module, or None if it needs none.

    src/flywheel/<pkg>/<mod>.py -> tests/unit/<pkg>/test_<mod>.py; a package's
    __init__.py that holds code -> tests/unit/<pkg>/test_<pkg>.py.
    """
    relative = module.relative_to(SRC)
    if module.name == "__main__.py":
        return None
    if module.name == "__init__.py":
        if not _holds_code(module):
            return None
        package = relative.parent
        name = package.name or "flywheel"
        return UNIT / package / f"test_{name}.py"
    return UNIT / relative.parent / f"test_{module.name}"


def test_unit_tests_mirror_the_library_one_module_each() -> None:
    # given every module of the library
    modules = sorted(SRC.rglob("*.py"))
    assert len(modules) > 30
    # then each has its test module where the mirror rule puts it
    wanted = {m: _mirror(m) for m in modules}
    missing = sorted(
        str(test.relative_to(REPO)) for test in wanted.values() if test and not test.is_file()
    )
    assert not missing, "missing unit test modules:\n" + "\n".join(missing)
    # and no unit test module stands where no module is
    mirrored = {test for test in wanted.values() if test}
    stray = sorted(
        str(path.relative_to(REPO)) for path in UNIT.rglob("test_*.py") if path not in mirrored
    )
    assert not stray, "unit test modules that mirror no library module:\n" + "\n".join(stray)


def _imported(path: Path) -> set[str]:
    """The modules a file imports, at any depth (relative imports left out)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_shared_test_code_comes_from_harness_never_from_a_test_module_or_a_conftest() -> None:
    # given every Python file but the library's
    files = [
        path
        for folder in ("tests", "components", "pipelines", "harness", "benchmarks", "tools")
        for path in (REPO / folder).rglob("*.py")
    ] + [REPO / "conftest.py"]
    # then none imports a test module or a conftest: what they share lives in harness/
    leaning = {
        str(path.relative_to(REPO)): sorted(
            name
            for name in _imported(path)
            if name.split(".")[0] in ("tests", "conftest") or name.endswith(".conftest")
        )
        for path in files
    }
    assert not {path: names for path, names in leaning.items() if names}


def test_every_unit_test_folder_is_a_package() -> None:
    folders = {path.parent for path in UNIT.rglob("test_*.py")}
    assert (
        sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file()) == []
    )


def test_the_mirror_rule() -> None:
    assert _mirror(SRC / "rollout" / "analysis.py") == UNIT / "rollout" / "test_analysis.py"
    assert _mirror(SRC / "config.py") == UNIT / "test_config.py"
    assert _mirror(SRC / "cli" / "__init__.py") == UNIT / "cli" / "test_cli.py"
    assert _mirror(SRC / "cli" / "__main__.py") is None
    assert _mirror(SRC / "serving" / "__init__.py") is None  # empty
