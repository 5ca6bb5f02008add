"""The behavioural diff in a few numbers, for the ``behaviour_finished`` event and so for the
webhooks (``events/webhooks/payload.py``): bounded whatever the diff holds (at most the rule's
datasets, the known metrics, short texts, finite numbers), and free of features or rows, so a
receiver never gets a dataset's contents.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from checkpoint.review.behaviour.evaluation import MAX_DATASETS

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "rmse", "mae")
PAIR = ("agreement", "mean_abs_diff")
TEXT = 300  # characters of a reason or an error
BREAKING = 5  # breaking changes listed


def summary(shown: Mapping) -> dict:
    """The compact form of a diff as the API shows it (``BehaviourDiffs.view``)."""
    examples = shown.get("examples") or {}
    inputs = [e for e in examples.get("inputs") or () if isinstance(e, Mapping)]
    errors = sum(
        1 for e in inputs for side in ("champion", "challenger") if isinstance(e.get(side), Mapping) and e[side].get("error")
    )
    return {
        "state": str(shown.get("state") or ""),
        "reason": _text(shown.get("reason")),
        "examples": {
            "inputs": len(inputs),
            "errors": errors,
            "breaking": [_text(b) for b in (examples.get("breaking") or ())[:BREAKING]],
        },
        "datasets": [_dataset(d) for d in (shown.get("datasets") or ())[:MAX_DATASETS] if isinstance(d, Mapping)],
    }


def _dataset(entry: Mapping) -> dict:
    out: dict = {"name": _text(entry.get("name"))[:64], "state": str(entry.get("state") or "")[:16]}
    if entry.get("error") or entry.get("reason"):
        out["error"] = _text(entry.get("error") or entry.get("reason"))
    if entry.get("digest"):
        out["digest"] = str(entry["digest"])[:12]
    if entry.get("read_at"):
        out["read_at"] = str(entry["read_at"])[:40]
    if isinstance(entry.get("rows"), int) and not isinstance(entry.get("rows"), bool):
        out["rows"] = entry["rows"]
    for name in PAIR:
        if _number(entry.get(name)) is not None:
            out[name] = _number(entry.get(name))
    found = entry.get("metrics")
    metrics: Mapping = found if isinstance(found, Mapping) else {}
    deltas = {}
    for name in METRICS:
        both = metrics.get(name)
        if isinstance(both, Mapping):
            old, new = _number(both.get("champion")), _number(both.get("challenger"))
            deltas[name] = {
                "champion": old,
                "challenger": new,
                "delta": new - old if old is not None and new is not None else None,
            }
    if deltas:
        out["metrics"] = deltas
    found = entry.get("latency_ms")
    if isinstance(found, Mapping) and found:
        sides = {side: found.get(side) for side in ("champion", "challenger")}
        out["p95_latency_ms"] = {s: _number(v.get("p95")) if isinstance(v, Mapping) else None for s, v in sides.items()}
    return out


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _text(value: object) -> str:
    text = " ".join(str(value or "").split())
    return text[:TEXT] + ("…" if len(text) > TEXT else "")


def line(data: Mapping) -> str:
    """One line for chat and the timeline: the state, then each dataset's headline numbers."""
    if data.get("state") != "done":
        return f"{data.get('state')}: {data.get('reason') or 'no reason given'}"
    parts = []
    examples = data.get("examples") or {}
    if examples.get("breaking"):
        parts.append(f"breaking: {examples['breaking'][0]}")
    for entry in data.get("datasets") or ():
        if entry.get("error"):
            parts.append(f"{entry.get('name')}: {entry['error']}")
            continue
        said = [f"agreement {100 * entry['agreement']:.1f}%"] if entry.get("agreement") is not None else []
        said += [f"mean |Δ| {entry['mean_abs_diff']:.4g}"] if entry.get("mean_abs_diff") is not None else []
        said += [f"{m} {d['delta']:+.4g}" for m, d in (entry.get("metrics") or {}).items() if d.get("delta") is not None][:2]
        parts.append(f"{entry.get('name')}: {', '.join(said) or 'scored'}")
    return "done" + (": " + "; ".join(parts) if parts else "")
