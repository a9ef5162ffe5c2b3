"""Schemas made from the sources of truth at hand: strict JSON schemas for kubeconform,
and CRD schemas typed from Kubernetes' own OpenAPI document.

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


# --- OpenAPI v3 components as CRD schemas -------------------------------------------

_INT_OR_STRING = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
}
# Types a structural schema cannot spell as OpenAPI does (oneOf of types): written as
# controller-gen writes them in every CRD, Argo's published ones included. The pattern
# is what resource.Quantity's parser accepts.
_KNOWN_TYPES: dict[str, dict[str, Any]] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": _INT_OR_STRING,
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        **_INT_OR_STRING,
        "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
        r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
    },
}
# The vendor extensions apiextensions.k8s.io/v1 accepts. The others in Kubernetes'
# OpenAPI (patch strategies, unions, group-version-kind) describe built-in kinds only.
_CRD_EXTENSIONS = {
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
}
_REF_PREFIX = "#/components/schemas/"


def with_refs_inlined(document: Any, components: dict[str, Any]) -> Any:
    """`document` with each `{$ref: "#/components/schemas/NAME"}` replaced by NAME as a
    structural CRD schema; keys beside the `$ref` (a description) are kept and win."""
    if isinstance(document, list):
        return [with_refs_inlined(v, components) for v in document]
    if not isinstance(document, dict):
        return document
    if "$ref" in document:
        siblings = {k: v for k, v in document.items() if k != "$ref"}
        return {**_component(document["$ref"], components, ()), **siblings}
    return {k: with_refs_inlined(v, components) for k, v in document.items()}


def _component(ref: str, components: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not ref.startswith(_REF_PREFIX):
        raise ValueError(f"only {_REF_PREFIX}* references can be inlined, not {ref}")
    name = ref.removeprefix(_REF_PREFIX)
    if name in _KNOWN_TYPES:
        return copy.deepcopy(_KNOWN_TYPES[name])
    if name in seen:  # a CRD schema has no references, so it cannot recurse
        raise ValueError(f"{name} refers to itself ({' -> '.join(seen)})")
    return _structural(components[name], components, (*seen, name))


def _structural(
    schema: dict[str, Any], components: dict[str, Any], seen: tuple[str, ...]
) -> dict[str, Any]:
    """One OpenAPI schema as a CRD's: references inlined; left out are the descriptions
    (a PodSpec's would make the CRD five times the size), the extensions a CRD refuses
    and the defaults a CRD would read differently.

    A CRD fills defaults in before it checks `required`, so the Go zero value that
    openapi-gen writes as the default of a required field (a container's `name: ""`)
    would let the field be missing, and the API server refuses it where an enum leaves
    it out (a seccomp profile's type). `default: {}` marks a struct field that is not a
    pointer; the API server refuses it where the struct has required fields
    (podAffinityTerm). The defaults of optional scalars stay: a list-map key that is
    not required needs one (a container port's protocol, TCP).
    """
    # OpenAPI v3 wraps a property's reference as allOf: [{$ref}] beside its default.
    wrapped = schema.get("allOf", [])
    if len(wrapped) == 1 and set(wrapped[0]) == {"$ref"}:
        schema = {**{k: v for k, v in schema.items() if k != "allOf"}, **wrapped[0]}
    out: dict[str, Any] = {}
    if "$ref" in schema:
        out.update(_component(schema["$ref"], components, seen))
    for key, value in schema.items():
        if (
            key in ("$ref", "description")
            or (key.startswith("x-") and key not in _CRD_EXTENSIONS)
            or (key == "default" and isinstance(value, dict | list))
        ):
            continue
        if key == "properties":
            out[key] = {n: _structural(s, components, seen) for n, s in value.items()}
            for name in schema.get("required", []):
                out[key].get(name, {}).pop("default", None)
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _structural(value, components, seen)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_structural(s, components, seen) for s in value]
        else:
            out[key] = value
    return out
