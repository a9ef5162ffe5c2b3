"""Standalone, strict JSON schemas for kubeconform, made from the sources of truth at hand.

kubeconform's default schemas are downloaded from GitHub, which the test
environment does not reach. The same schemas come from the real API server's own OpenAPI
document (for built-in kinds) and from the CRDs' openAPIV3Schema (for
SeldonDeployment and Argo's kinds). "Strict" means every object schema refuses
properties it does not list, as kubeconform's -strict schemas do.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not preserve
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _inline(schema: Any, definitions: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            name = ref.split("/")[-1]
            if name in seen:  # recursive types (JSONSchemaProps): stop, accept anything
                return {}
            return _inline(copy.deepcopy(definitions[name]), definitions, (*seen, name))
        return {k: _inline(v, definitions, seen) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, definitions, seen) for v in schema]
    return schema


def _file_name(kind: str, group: str, version: str) -> str:
    suffix = f"-{group.split('.')[0]}" if group else ""
    return f"{kind.lower()}{suffix}-{version}.json"


def from_openapi(swagger: dict[str, Any], kinds: set[str], out: Path) -> list[Path]:
    """Schemas for the built-in kinds named in `kinds`, from the API server's /openapi/v2."""
    definitions = swagger["definitions"]
    written = []
    for definition in definitions.values():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            if gvk["kind"] not in kinds:
                continue
            schema = _strict(_inline(copy.deepcopy(definition), definitions))
            # int-or-string fields are formatted, not typed, in OpenAPI v2.
            path = out / _file_name(gvk["kind"], gvk["group"], gvk["version"])
            path.write_text(json.dumps(_fix_int_or_string(schema)))
            written.append(path)
    return written


def _fix_int_or_string(schema: Any) -> Any:
    if isinstance(schema, dict):
        if schema.get("format") == "int-or-string":
            return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
        return {k: _fix_int_or_string(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_fix_int_or_string(v) for v in schema]
    return schema


def from_crds(crd_files: list[Path], out: Path) -> list[Path]:
    """Schemas for each served version of each CRD."""
    written = []
    for crd_file in crd_files:
        for crd in yaml.safe_load_all(crd_file.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                properties = schema.setdefault("properties", {})
                properties["metadata"] = {"type": "object"}
                properties["apiVersion"] = {"type": "string"}
                properties["kind"] = {"type": "string"}
                path = out / _file_name(kind, group, version["name"])
                path.write_text(json.dumps(schema))
                written.append(path)
    return written


LOCATION = "{{ .ResourceKind }}{{ .KindSuffix }}.json"
