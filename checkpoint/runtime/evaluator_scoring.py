"""The program that reads an evaluation dataset and scores what two models predicted on it
(``review/behaviour/datasets.py`` starts it through ``runtime/sandbox.py``, as ``python -I -B
evaluator_scoring.py``, with a scrubbed environment, no network and limits).

It imports nothing of Checkpoint and never loads a model: it handles data only, but data an
author controls (the dataset, and predictions a model's code wrote), so it runs apart from the
secrets too, and everything it reads is checked before use (sizes, types, finite numbers,
latencies not negative). One JSON job on stdin, one JSON answer on stdout:

* ``{"mode": "prepare", "source", "format", "target", "slices", "max_rows"}``: read the
  downloaded file (parquet or CSV), keep its first ``max_rows`` rows, write ``features.parquet``
  (what the models get: no target) and ``labels.parquet`` (target and slices);
* ``{"mode": "score", "target", "slices", "answers": {side: file}}``: the numbers the page shows.
"""

from __future__ import annotations

import json
import math
import os
import sys

ANSWER_MAX = 1 << 30  # bytes of one model's predictions file
LATENCY_MAX, CLASSES_MAX, SLICE_VALUES, TOP_ROWS, FEATURES_SHOWN, BINS = 1000, 50, 20, 20, 12, 20
SIDES = ("champion", "challenger")


class Refused(Exception):
    """The data is not what it must be: the dataset's error, said plainly."""


def prepare(job: dict) -> dict:
    import pandas as pd

    source, target, slices, max_rows = job["source"], job.get("target"), job.get("slices") or [], int(job["max_rows"])
    try:
        if job["format"] == ".csv":
            frame = pd.read_csv(source, nrows=max_rows, low_memory=False)
        else:
            frame = pd.read_parquet(source)
    except Exception as exc:  # any reader error: the dataset is unreadable
        raise Refused(f"the dataset is unreadable as {job['format'][1:]}: {type(exc).__name__}: {str(exc)[:300]}") from exc
    frame = frame.iloc[:max_rows]
    frame.columns = [str(c) for c in frame.columns]
    missing = [c for c in [target, *slices] if c and c not in frame.columns]
    if missing:
        raise Refused(f"the dataset has no column {', '.join(missing)} (its columns: {', '.join(frame.columns[:30])})")
    if len(frame) == 0:
        raise Refused("the dataset has no rows")
    labels = [c for c in [target, *slices] if c]
    features = frame.drop(columns=[target]) if target else frame
    if features.shape[1] == 0:
        raise Refused("the dataset has no feature columns besides the target")
    features.to_parquet("features.parquet")
    frame[labels].to_parquet("labels.parquet")
    return {"rows": len(frame), "columns": list(features.columns[:200])}


def _finite(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Refused(f"{what} is not a finite number ({str(value)[:40]!r})")
    return float(value)


def read_answer(path: str, rows: int, side: str) -> dict:
    """One model's predictions file, checked: one prediction per row, classes or finite numbers,
    probabilities finite in [0, 1], latencies finite and not negative."""
    if os.path.getsize(path) > ANSWER_MAX:
        raise Refused(f"the {side}'s predictions are over {ANSWER_MAX:,} bytes")
    with open(path) as file:
        data = json.load(file)
    if not isinstance(data, dict):
        raise Refused(f"the {side}'s answer is not an object")
    predictions, probabilities, latency = data.get("predictions"), data.get("probabilities"), data.get("latency_ms")
    if not isinstance(predictions, list) or len(predictions) != rows:
        raise Refused(
            f"the {side} gave {len(predictions) if isinstance(predictions, list) else 'no'} predictions for {rows} rows"
        )
    if not isinstance(latency, list) or not 0 < len(latency) <= LATENCY_MAX:
        raise Refused(f"the {side}'s latencies are missing or too many")
    latency = [_finite(v, f"a latency of the {side}") for v in latency]
    if any(v < 0 for v in latency):
        raise Refused(f"a latency of the {side} is negative")
    if probabilities is not None:
        if not isinstance(probabilities, list) or len(probabilities) != rows:
            raise Refused(f"the {side}'s probabilities are not one row per prediction")
        width = len(probabilities[0]) if probabilities and isinstance(probabilities[0], list) else 0
        if not 2 <= width <= CLASSES_MAX or any(not isinstance(p, list) or len(p) != width for p in probabilities):
            raise Refused(f"the {side}'s probabilities are not rows of 2 to {CLASSES_MAX} numbers")
        if any(not 0 <= _finite(x, f"a probability of the {side}") <= 1 for p in probabilities for x in p):
            raise Refused(f"a probability of the {side} is outside [0, 1]")
    return {"predictions": predictions, "probabilities": probabilities, "latency": latency}


def kind_of(predictions: list, side: str) -> str:
    if all(isinstance(v, str | int) and not isinstance(v, float) for v in predictions):
        return "classes"
    for v in predictions:
        _finite(v, f"a prediction of the {side}")
    return "numbers"


def score(job: dict) -> dict:
    import pandas as pd

    labels = pd.read_parquet("labels.parquet")
    features = pd.read_parquet("features.parquet")
    rows, target, slices = len(features), job.get("target"), job.get("slices") or []
    answers = {side: read_answer(job["answers"][side], rows, side) for side in SIDES}
    kinds = {kind_of(answers[side]["predictions"], side) for side in SIDES}
    if len(kinds) != 1:
        raise Refused("one model predicts classes, the other numbers: they cannot be compared")
    kind = kinds.pop()
    truth = labels[target].tolist() if target else None
    out: dict = {"rows": rows, "kind": kind}
    out.update(_classes(answers, truth) if kind == "classes" else _numbers(answers, truth))
    change = _change(answers, kind)
    out["histogram"] = _histogram(change)
    out["latency_ms"] = {side: _quantiles(answers[side]["latency"]) for side in SIDES}
    out["slices"] = _slices(labels, slices, answers, truth, kind)
    out["disagreements"] = _top_rows(features, answers, truth, change, kind)
    return out


def _pair(answers: dict) -> tuple[list, list]:
    return answers["champion"]["predictions"], answers["challenger"]["predictions"]


def _number(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _metrics(both: dict) -> dict:
    out = {}
    for name, (a, b) in both.items():
        a, b = _number(a), _number(b)
        out[name] = {"champion": a, "challenger": b, "delta": None if a is None or b is None else b - a}
    return out


def _classes(answers: dict, truth: list | None) -> dict:
    from sklearn import metrics

    champion, challenger = _pair(answers)
    keys = [str(v) for v in champion], [str(v) for v in challenger]
    flips: dict[str, dict[str, int]] = {}
    for a, b in zip(*keys, strict=True):
        flips.setdefault(a, {}).setdefault(b, 0)
        flips[a][b] += 1
    if len(flips) > CLASSES_MAX or any(len(v) > CLASSES_MAX for v in flips.values()):
        flips = {}
    agree = sum(a == b for a, b in zip(*keys, strict=True))
    out: dict = {"agreement": agree / len(champion), "rows_differ": len(champion) - agree, "flips": flips}
    if truth is None:
        return out
    truth_keys = [str(v) for v in truth]
    labels = sorted(set(truth_keys) | set(keys[0]) | set(keys[1]))
    binary = len(labels) == 2
    average = "binary" if binary else "macro"
    both: dict[str, tuple] = {}
    for metric, fn in (
        ("accuracy", metrics.accuracy_score),
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
        ("f1", metrics.f1_score),
    ):
        extra = (
            {}
            if metric == "accuracy"
            else {"average": average, "zero_division": 0, **({"pos_label": labels[-1]} if binary else {})}
        )
        both[metric] = tuple(fn(truth_keys, side_keys, **extra) for side_keys in keys)
    probs = [answers[side]["probabilities"] for side in SIDES]
    classes = sorted(set(truth_keys))
    if all(p is not None and len(p[0]) == len(classes) for p in probs) and len(classes) >= 2:
        try:
            if len(classes) == 2:
                both["roc_auc"] = tuple(metrics.roc_auc_score(truth_keys, [r[1] for r in p]) for p in probs)
            else:
                both["roc_auc"] = tuple(metrics.roc_auc_score(truth_keys, p, multi_class="ovr", labels=classes) for p in probs)
        except ValueError:
            pass  # e.g. one class only in the truth: no AUC
    out["metrics"] = _metrics(both)
    return out


def _numbers(answers: dict, truth: list | None) -> dict:
    import numpy as np

    champion, challenger = (np.asarray(p, dtype=float) for p in _pair(answers))
    diff = np.abs(challenger - champion)
    constant = champion.std() == 0 or challenger.std() == 0
    out: dict = {
        "mean_abs_diff": float(diff.mean()),
        "p95_abs_diff": float(np.percentile(diff, 95)),
        "max_abs_diff": float(diff.max()),
        "correlation": None if constant else float(np.corrcoef(champion, challenger)[0, 1]),
    }
    if truth is not None:
        y = np.asarray([_finite(v, "a target value") for v in truth])
        both = {
            "rmse": tuple(float(np.sqrt(np.mean((p - y) ** 2))) for p in (champion, challenger)),
            "mae": tuple(float(np.mean(np.abs(p - y))) for p in (champion, challenger)),
        }
        out["metrics"] = _metrics(both)
    return out


def _change(answers: dict, kind: str) -> list[float] | None:
    """Per row, how much the score moved (challenger − champion): the positive class's probability
    for a two-class classifier, the prediction for a regressor; None when there is no score."""
    if kind == "numbers":
        a, b = _pair(answers)
        return [float(y) - float(x) for x, y in zip(a, b, strict=True)]
    probs = [answers[side]["probabilities"] for side in SIDES]
    if any(p is None or len(p[0]) != 2 for p in probs):
        return None
    return [y[1] - x[1] for x, y in zip(probs[0], probs[1], strict=True)]


def _histogram(change: list[float] | None) -> dict | None:
    import numpy as np

    if not change:
        return None
    counts, edges = np.histogram(np.asarray(change), bins=BINS)
    return {"counts": [int(c) for c in counts], "edges": [float(e) for e in edges]}


def _quantiles(values: list[float]) -> dict:
    import numpy as np

    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)), "samples": len(values)}


def _slices(labels, slices: list[str], answers: dict, truth: list | None, kind: str) -> list[dict]:
    import numpy as np

    champion, challenger = _pair(answers)
    out = []
    for column in slices:
        values = labels[column].astype(str).str.slice(0, 80)
        for value, count in values.value_counts().head(SLICE_VALUES).items():
            index = np.flatnonzero((values == value).to_numpy())
            entry: dict = {"column": column, "value": str(value), "rows": int(count)}
            a, b = [champion[i] for i in index], [challenger[i] for i in index]
            if kind == "classes":
                entry["agreement"] = sum(str(x) == str(y) for x, y in zip(a, b, strict=True)) / len(index)
                if truth is not None:
                    t = [str(truth[i]) for i in index]
                    entry["accuracy"] = {
                        s: sum(str(p) == y for p, y in zip(side, t, strict=True)) / len(t)
                        for s, side in zip(SIDES, (a, b), strict=True)
                    }
            else:
                entry["mean_abs_diff"] = float(np.mean(np.abs(np.asarray(b, dtype=float) - np.asarray(a, dtype=float))))
                if truth is not None:
                    y = np.asarray([float(truth[i]) for i in index])
                    entry["rmse"] = {
                        s: float(np.sqrt(np.mean((np.asarray(side, dtype=float) - y) ** 2)))
                        for s, side in zip(SIDES, (a, b), strict=True)
                    }
            out.append(entry)
    return out


def _top_rows(features, answers: dict, truth: list | None, change: list[float] | None, kind: str) -> list[dict]:
    """The rows where the two disagree most, with their first features (as short text)."""
    champion, challenger = _pair(answers)
    if kind == "classes":
        differ = [i for i in range(len(champion)) if str(champion[i]) != str(challenger[i])]
        order = sorted(differ, key=lambda i: -abs(change[i]) if change else 0)
    else:
        order = sorted(range(len(champion)), key=lambda i: -abs(float(challenger[i]) - float(champion[i])))
    columns = list(features.columns[:FEATURES_SHOWN])
    out = []
    for i in order[:TOP_ROWS]:
        row = features.iloc[i]
        out.append(
            {
                "row": int(i),
                "champion": str(champion[i])[:80],
                "challenger": str(challenger[i])[:80],
                "truth": None if truth is None else str(truth[i])[:80],
                "change": None if change is None else change[i],
                "features": {str(c)[:80]: str(row[c])[:80] for c in columns},
            }
        )
    return out


def main() -> None:
    answer = os.dup(1)
    os.dup2(2, 1)
    job = json.loads(sys.stdin.read(1 << 20))
    try:
        result = prepare(job) if job.get("mode") == "prepare" else score(job)
    except Refused as exc:
        result = {"error": str(exc)}
    with os.fdopen(answer, "w") as out:
        json.dump(result, out, allow_nan=False)


if __name__ == "__main__":
    main()
