"""What two models did differently on the same inputs: pure functions over the predictions
the isolated runs gave back (``runner.py``), and the result the page and the API show.

Classes (strings, booleans, integers) are compared by agreement; numbers (floats, or rows of
them such as class probabilities) by their absolute differences. A challenger that fails
where the champion did not, above all on the champion's own input example, is breaking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

SIDES = ("champion", "challenger")


def is_classes(values: Sequence) -> bool:
    """Whether predictions are labels (compared by agreement) rather than scores."""
    return bool(values) and all(isinstance(v, str | bool | int) for v in values)


def _flat(value) -> list[float]:
    if isinstance(value, list):
        return [x for item in value for x in _flat(item)]
    return [float(value)]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between the nearest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def compare(champion: Sequence, challenger: Sequence) -> dict:
    """The two models' predictions on one input, row by row."""
    if len(champion) != len(challenger):
        return {"rows": min(len(champion), len(challenger)), "problem": f"{len(champion)} vs {len(challenger)} predictions"}
    rows = len(champion)
    if is_classes(champion) and is_classes(challenger):
        same = sum(1 for a, b in zip(champion, challenger, strict=True) if a == b)
        return {"rows": rows, "kind": "classes", "agreement": same / rows if rows else None, "disagreements": rows - same}
    try:
        diffs = [abs(a - b) for x, y in zip(champion, challenger, strict=True) for a, b in zip(_flat(x), _flat(y), strict=True)]
    except (TypeError, ValueError):
        return {"rows": rows, "problem": "the predictions are neither classes nor numbers of the same shape"}
    finite = [d for d in diffs if not math.isnan(d)]
    return {
        "rows": rows,
        "kind": "numbers",
        "mean_abs_diff": sum(finite) / len(finite) if finite else None,
        "p95_abs_diff": percentile(finite, 0.95) if finite else None,
        "max_abs_diff": max(finite) if finite else None,
    }


def summarise(runs: Mapping[str, Mapping | None], versions: Mapping[str, dict | None]) -> tuple[str, str, dict]:
    """Both sides' runs (``runner.run_side``'s answers; None for a side that does not exist)
    as (state, reason, result)."""
    sides = [s for s in SIDES if runs.get(s) is not None]
    result: dict = {"models": {}, "inputs": [], "breaking": []}
    for side in sides:
        run = runs[side] or {}
        result["models"][side] = {"error": run.get("error"), "load_seconds": run.get("load_seconds")}
    failed = [s for s in sides if (runs[s] or {}).get("error")]
    if "challenger" in failed:
        result["breaking"].append(f"the challenger could not be run: {_first_line((runs['challenger'] or {})['error'])}")
    names = [s for s in SIDES if versions.get(s)]
    for name in names:
        entry: dict = {"example": name}
        outputs: dict = {}
        for side in sides:
            answer = ((runs[side] or {}).get("examples") or {}).get(name)
            if answer is None or side in failed:
                continue
            if "unreadable" in answer:
                entry["missing"] = _first_line(answer["unreadable"])
                continue
            if "error" in answer:
                entry[side] = {"error": answer["error"]}
                continue
            seconds, rows = answer.get("seconds") or 0.0, answer.get("rows") or 0
            entry[side] = {"rows": rows, "ms_per_row": 1000 * seconds / rows if rows else None}
            outputs[side] = answer.get("predictions") or []
        if "missing" not in entry:
            entry["rows"] = max((e.get("rows", 0) for s, e in entry.items() if s in SIDES and isinstance(e, dict)), default=0)
        if len(outputs) == 2:
            entry["comparison"] = compare(outputs["champion"], outputs["challenger"])
        champion_ok = "champion" in outputs or "champion" not in sides
        if "error" in entry.get("challenger", {}) and champion_ok:
            whose = "its own" if name == "challenger" else "the champion's"
            why = _first_line(entry["challenger"]["error"])
            result["breaking"].append(f"the challenger fails on {whose} input example: {why}")
        result["inputs"].append(entry)
    if failed:
        return "error", "; ".join(f"the {s} could not be run: {_first_line((runs[s] or {})['error'])}" for s in failed), result
    return "done", "", result


def _first_line(text: str) -> str:
    """The line of a traceback that says what went wrong (its last non-empty line)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
