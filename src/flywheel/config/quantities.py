"""Kubernetes CPU and memory quantities: the forms a step's requests and limits are written in."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_CPU = re.compile(r"([0-9]*\.)?[0-9]+m?")
_MEMORY = re.compile(r"([0-9]+)(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?")
_MEMORY_UNITS: dict[str, int] = {
    **{s: 1000**i for i, s in enumerate(("", "K", "M", "G", "T", "P", "E"))},
    **{s: 1024**i for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), start=1)},
}


def _quantity_text(value: object) -> object:
    # YAML reads `cpu_limit: 2` as a number; a quantity is written as a string.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _cpu(value: str) -> str:
    if not _CPU.fullmatch(value):
        raise ValueError("must be a number of cores, e.g. 2 or 0.5, or of millicores, e.g. 500m")
    return value


def _memory(value: str) -> str:
    if not _MEMORY.fullmatch(value):
        raise ValueError(
            "must be a whole number of bytes, optionally with one of the suffixes "
            "K, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei, e.g. 512Mi or 2Gi"
        )
    return value


# The forms KFP's compiler accepts (PipelineTask.set_cpu_limit and friends): a
# subset of Kubernetes quantities, so that a bad value fails here, with its key.
CpuQuantity = Annotated[str, BeforeValidator(_quantity_text), AfterValidator(_cpu)]
MemoryQuantity = Annotated[str, BeforeValidator(_quantity_text), AfterValidator(_memory)]


def cpu_cores(quantity: str) -> float:
    """A CPU quantity (2, 0.5, 500m) in cores."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory_bytes(quantity: str) -> int:
    """A memory quantity (512Mi, 2G, 1048576) in bytes."""
    match = _MEMORY.fullmatch(quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a memory quantity")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""]
