"""Loading the configuration: flywheel.yaml, then FLYWHEEL_* variables, then --set flags,
with each key's origin kept so that an error names the file and line, variable or flag."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from flywheel.config.base import ENV_PREFIX, OTHER_VARIABLES
from flywheel.config.settings import Settings
from flywheel.errors import FlywheelError

DEFAULT_CONFIG = "flywheel.yaml"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML's safe loader, reading an exponent without a dot (1e-05) as a number, as YAML 1.2
    does and as Helm's toYaml writes a small one (PyYAML's YAML 1.1 reads it as a string).
    libyaml's parser where PyYAML has it: the pure-Python one took a quarter of a second of
    every command reading flywheel.yaml."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class ConfigError(FlywheelError, ValueError):
    """The configuration is invalid; the message names each key path and reason."""

    __module__ = "flywheel.config"  # the name callers import it by, and errors print


@dataclass(frozen=True)
class _Origin:
    where: str


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Iterable[str] = (),
) -> Settings:
    """Read flywheel.yaml, then apply FLYWHEEL_* variables, then `key.path=value` overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], _Origin] = {}
    source = Path(path) if path is not None else None
    if source is not None:
        data, origins = _read_yaml(source)
    for name, raw in sorted(env.items()):
        key = _env_key(name)
        if key is not None:
            _assign(data, key, _parse_scalar(raw), origins, _Origin(f"from env {name}"))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        dotted, raw = item.split("=", 1)
        key = tuple(part for part in dotted.strip().split(".") if part)
        if not key:
            raise ConfigError(f"--set {item!r}: the key path is empty")
        _assign(data, key, _parse_scalar(raw), origins, _Origin(f"from --set {dotted}"))
    try:
        return Settings.model_validate_json(json.dumps(data, default=_json_default))
    except ValidationError as error:
        raise ConfigError(_describe(error, source, origins)) from None


def _env_key(name: str) -> tuple[str, ...] | None:
    if not name.startswith(ENV_PREFIX) or name in OTHER_VARIABLES:
        return None
    key = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
    if key[0] not in Settings.model_fields:
        known = ", ".join(sorted(Settings.model_fields))
        raise ConfigError(
            f"environment variable {name}: {key[0]!r} is not a configuration section "
            f"(one of {known}; nested keys are joined by __, as in FLYWHEEL_MODEL__SEED)"
        )
    return key


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.load(raw, Loader=_Loader) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def _json_default(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a configuration value")


def _assign(
    data: dict[str, Any],
    key: tuple[str, ...],
    value: Any,
    origins: dict[tuple[str, ...], _Origin],
    origin: _Origin,
) -> None:
    node = data
    for i, part in enumerate(key[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            if child is not None:
                dotted = ".".join(key[: i + 1])
                raise ConfigError(f"{dotted} ({origin.where}): is a value, not a section")
            child = node[part] = {}
        node = child
    node[key[-1]] = value
    origins[key] = origin


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], _Origin]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, not {type(data).__name__}"
        )
    origins: dict[tuple[str, ...], _Origin] = {}
    _record_lines(root, (), origins, path)
    return data, origins


def _record_lines(
    node: yaml.Node | None,
    key: tuple[str | int, ...],
    origins: dict[tuple[str, ...], _Origin],
    path: Path,
) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*key, str(key_node.value))
            origins[tuple(map(str, child))] = _Origin(f"{path}:{key_node.start_mark.line + 1}")
            _record_lines(value_node, child, origins, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*key, i)
            origins[tuple(map(str, child))] = _Origin(f"{path}:{item.start_mark.line + 1}")
            _record_lines(item, child, origins, path)


def _describe(
    error: ValidationError, source: Path | None, origins: dict[tuple[str, ...], _Origin]
) -> str:
    lines = [f"{source or 'the configuration'} is not valid:"]
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        dotted = ".".join(loc) or "(top level)"
        origin = _closest_origin(loc, origins)
        reason = item["msg"]
        if loc and loc[-1] == "[key]":
            # The key itself is wrong (a dict whose keys are constrained): name it, not "[key]".
            dotted = ".".join(loc[:-1])
            origin = _closest_origin(loc[:-1], origins)
            reason = f"not a valid key: {reason}"
        elif item["type"] == "extra_forbidden":
            reason = "unknown key"
        elif "input" in item and item["type"] != "missing" and not _is_section(item):
            reason = f"{reason} (got {item['input']!r})"
        where = f" ({origin.where})" if origin else ""
        lines.append(f"  {dotted}{where}: {reason}")
    return "\n".join(lines)


def _is_section(item: Any) -> bool:
    # A check across a whole section names what it found; echoing the section adds noise.
    return item["type"] == "value_error" and isinstance(item["input"], dict)


def _closest_origin(
    loc: tuple[str, ...], origins: dict[tuple[str, ...], _Origin]
) -> _Origin | None:
    for end in range(len(loc), 0, -1):
        origin = origins.get(loc[:end])
        if origin is not None:
            return origin
    # An unknown section set as a.b=... is recorded under its full path.
    return next((o for key, o in origins.items() if key[: len(loc)] == loc), None)


def json_schema() -> dict[str, Any]:
    """The JSON schema of flywheel.yaml."""
    return Settings.model_json_schema()
