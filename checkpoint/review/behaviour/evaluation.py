"""A rule's ``evaluation:`` key: the datasets both models are scored on (besides their input
examples), each ``{name, uri, target, slices, max_rows}``. Parsed at start; every malformed
entry refused naming the rule and the key, like every other policy key. Pure: no I/O.

The URI is read by Checkpoint itself, through MLflow's artifact proxy with Checkpoint's own
credentials (``datasets.py``), never by the process that runs a model: ``runs:/<run id>/<path>``,
``models:/<logged model id>/<path>`` or ``mlflow-artifacts:/<path>``; parquet or CSV.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

SCHEMES = ("runs", "models", "mlflow-artifacts")
FORMATS = (".parquet", ".csv")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")  # a dataset's name, as a check's expression names it
MAX_ROWS, MAX_SLICES, MAX_DATASETS = 1_000_000, 5, 5
DEFAULT_ROWS = 100_000
KEYS = {"name", "uri", "target", "slices", "max_rows"}


class EvaluationConfigError(ValueError):
    """An ``evaluation:`` entry is invalid; the message names the rule and the key."""


@dataclass(frozen=True)
class EvaluationSet:
    """One dataset both models are scored on: ``target`` the column holding the truth (None:
    compared with each other only), ``slices`` columns whose values get rows of their own."""

    name: str
    uri: str
    target: str | None = None
    slices: tuple[str, ...] = ()
    max_rows: int = DEFAULT_ROWS

    @property
    def format(self) -> str:
        return ".csv" if urlsplit(self.uri).path.lower().endswith(".csv") else ".parquet"

    def as_data(self) -> dict:
        return asdict(self) | {"slices": list(self.slices)}


def entries_key(sets: tuple[EvaluationSet, ...]) -> str:
    """The policy entries as one canonical text (part of a diff's cache key)."""
    return json.dumps([s.as_data() for s in sets], sort_keys=True, separators=(",", ":"))


def from_data(items: list[dict]) -> tuple[EvaluationSet, ...]:
    """Entries stored with a diff (``as_data``), read back."""
    return tuple(
        EvaluationSet(i["name"], i["uri"], i.get("target"), tuple(i.get("slices") or ()), int(i["max_rows"])) for i in items
    )


def parse_evaluation(raw: Any, where: str) -> tuple[EvaluationSet, ...]:
    """A rule's ``evaluation`` list (None: no key)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise EvaluationConfigError(f"{where}.evaluation: expected a list of datasets ({{name, uri, ...}}), got {raw!r}")
    if len(raw) > MAX_DATASETS:
        raise EvaluationConfigError(f"{where}.evaluation: at most {MAX_DATASETS} datasets per rule, got {len(raw)}")
    out: list[EvaluationSet] = []
    for i, item in enumerate(raw):
        entry = _entry(item, f"{where}.evaluation[{i}]")
        if any(e.name == entry.name for e in out):
            raise EvaluationConfigError(f"{where}.evaluation[{i}].name: {entry.name!r} is used twice in this rule")
        out.append(entry)
    return tuple(out)


def _entry(item: Any, where: str) -> EvaluationSet:
    if not isinstance(item, dict):
        raise EvaluationConfigError(f"{where}: expected a mapping with name and uri, got {item!r}")
    unknown = set(map(str, item)) - KEYS
    if unknown:
        raise EvaluationConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KEYS))}")
    name = item.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise EvaluationConfigError(
            f"{where}.name: expected a letter then up to 63 letters, digits, _ or -, such as holdout; got {name!r}"
        )
    where = f"{where} ({name})"
    uri = item.get("uri")
    parts = urlsplit(uri) if isinstance(uri, str) else None
    if parts is None or parts.scheme not in SCHEMES or not (parts.netloc + parts.path).strip("/"):
        raise EvaluationConfigError(
            f"{where}.uri: expected runs:/<run id>/<path>, models:/<model id>/<path> or mlflow-artifacts:/<path>, got {uri!r}"
        )
    if not parts.path.lower().endswith(FORMATS):
        raise EvaluationConfigError(f"{where}.uri: expected a file ending in .parquet or .csv, got {uri!r}")
    if parts.query or parts.fragment or ".." in parts.path.split("/"):
        raise EvaluationConfigError(f"{where}.uri: expected a plain path (no query, fragment or ..), got {uri!r}")
    target = item.get("target")
    if target is not None and (not isinstance(target, str) or not target.strip()):
        raise EvaluationConfigError(f"{where}.target: expected the name of the column holding the truth, got {target!r}")
    slices = item.get("slices", [])
    if isinstance(slices, str):
        slices = [slices]
    if not isinstance(slices, list) or not all(isinstance(s, str) and s.strip() for s in slices) or len(slices) > MAX_SLICES:
        raise EvaluationConfigError(f"{where}.slices: expected a list of at most {MAX_SLICES} column names, got {slices!r}")
    if target is not None and target.strip() in [s.strip() for s in slices]:
        raise EvaluationConfigError(f"{where}.slices: {target!r} is the target; slice by a feature column")
    rows = item.get("max_rows", DEFAULT_ROWS)
    if not isinstance(rows, int) or isinstance(rows, bool) or not 1 <= rows <= MAX_ROWS:
        raise EvaluationConfigError(f"{where}.max_rows: expected a whole number from 1 to {MAX_ROWS:,}, got {rows!r}")
    return EvaluationSet(name, uri, target.strip() if target else None, tuple(s.strip() for s in slices), rows)  # type: ignore[arg-type]
