"""Parsing the artifacts the diff reads: ``MLmodel`` (signature, flavours) and ``requirements.txt``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from checkpoint.review.diff.types import ColumnSpec, Signature

# -- parsing artifacts -----------------------------------------------------------------

_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", re.DOTALL)
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
_USERINFO = re.compile(r"(//)[^/@\s]+@")


def normalize_name(name: str) -> str:
    """PEP 503 normalisation, so ``Scikit_Learn`` and ``scikit-learn`` are one requirement."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(text: str) -> dict[str, str]:
    """``requirements.txt`` → {normalised name: the rest of the line (extras, specifier, marker, URL)}.

    Comments and blank lines are skipped; option lines (``-r``, ``--extra-index-url``) and bare
    URLs without ``#egg=`` are kept whole as their own key so that changing them still shows.
    Credentials in URLs are masked.
    """
    out: dict[str, str] = {}
    for raw in _logical_lines(text):
        line = _USERINFO.sub(r"\1***@", _strip_comment(raw)).strip()
        if not line:
            continue
        if line.startswith("-"):
            egg = _EGG.search(line)
            out[normalize_name(egg.group(1)) if egg else line] = "" if not egg else line
            continue
        if "://" in line.split("@", 1)[0] or line.startswith(("git+", "file:")):
            egg = _EGG.search(line)
            out[normalize_name(egg.group(1)) if egg else line] = line if egg else ""
            continue
        match = _REQ_NAME.match(line)
        if match:
            out[normalize_name(match.group(1))] = re.sub(r"\s+", " ", match.group(2)).strip()
    return out


def _logical_lines(text: str) -> list[str]:
    """Physical lines joined on trailing backslashes, as pip reads them."""
    return text.replace("\\\r\n", " ").replace("\\\n", " ").splitlines()


def _strip_comment(line: str) -> str:
    """Drop a ``#`` comment: a whole-line one, or one after whitespace (``#egg=`` survives)."""
    if line.lstrip().startswith("#"):
        return ""
    return re.split(r"\s+#", line, maxsplit=1)[0]


def parse_mlmodel(text: str) -> tuple[Signature | None, tuple[str, ...]]:
    """The signature and flavour names of an ``MLmodel`` file; raises ValueError when unreadable."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"MLmodel is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("MLmodel is not a YAML mapping")
    flavors = data.get("flavors")
    names = tuple(sorted(str(k) for k in flavors)) if isinstance(flavors, dict) else ()
    return parse_signature(data.get("signature")), names


def parse_signature(raw: Any) -> Signature | None:
    """MLmodel's ``signature`` (each part a JSON string of column or tensor specs) → Signature."""
    if not isinstance(raw, dict):
        return None
    parts = {part: _parse_specs(raw.get(part), part) for part in ("inputs", "outputs", "params")}
    if not parts["inputs"] and not parts["outputs"]:
        return None
    return Signature(**parts)


def _parse_specs(raw: Any, part: str) -> tuple[ColumnSpec, ...]:
    if raw in (None, "", "null"):
        return ()
    try:
        items = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise ValueError(f"signature {part} is not JSON: {exc}") from exc
    if not isinstance(items, list):
        raise ValueError(f"signature {part} is not a list")
    return tuple(_column(item) for item in items if isinstance(item, dict))


def _column(spec: Mapping[str, Any]) -> ColumnSpec:
    """A comparable type string: ``double``, ``tensor<float32>[-1, 4]``, or compact JSON for
    nested types (arrays, objects, maps); inference params carry their default and shape too."""
    kind = spec.get("type", "")
    if kind == "tensor":
        tensor = spec.get("tensor-spec") or {}
        type_ = f"tensor<{tensor.get('dtype', '?')}>{list(tensor.get('shape') or [])}"
    elif isinstance(kind, str) and set(spec) <= {"name", "type", "required", "default", "shape"}:
        extras = {k: spec[k] for k in ("default", "shape") if spec.get(k) is not None}
        type_ = f"{kind} {json.dumps(extras, sort_keys=True)}" if extras else kind
    else:
        rest = {k: v for k, v in spec.items() if k not in ("name", "required")}
        type_ = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    return ColumnSpec(name=str(spec.get("name") or ""), type=type_, required=bool(spec.get("required", True)))
