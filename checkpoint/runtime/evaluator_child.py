"""The program one isolated model run executes (``runtime/sandbox.py`` starts it, as
``python -I -B evaluator_child.py``, in a scratch directory holding one model's files).

It imports nothing of Checkpoint: it runs where Checkpoint's secrets are not, and what it
writes back is plain JSON data the parent checks before using. The job arrives on stdin:
``{"model": <dir>, "examples": {<name>: <dir holding MLmodel and its input example>},
"max_rows": n, "datasets": {<name>: <features parquet>}}``. It loads the model with MLflow's
pyfunc loader, predicts on each input example, and writes one JSON object to the stdout it was
started with; the model's own prints go to stderr (the parent keeps only their tail).

Each evaluation dataset (features only: Checkpoint keeps the target away from the model) is
predicted in chunks; its answer is a file ``answers/<name>.json`` (too large for stdout):
``{"predictions", "probabilities" (when the model offers ``predict_proba``), "latency_ms"}``,
the latencies those of single rows predicted one at a time (a sample), as a served model sees them.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def describe(exc: BaseException) -> str:
    """An exception as the end of its traceback, then the exception on one line of its own (the
    line a page shows: a multi-line message would otherwise show only its last line)."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    summary = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(summary) > 600:  # a message's start names the error, its end often says why
        summary = f"{summary[:200]} … {summary[-390:]}"
    return "".join(lines)[-1500:] + "\n" + summary


def plain(values, max_rows: int) -> list:
    """A model's output as JSON-ready lists: one value per row (a list per row when the model
    returns several columns, e.g. class probabilities)."""
    import numpy as np
    import pandas as pd

    if isinstance(values, pd.DataFrame):
        values = values.iloc[:, 0] if values.shape[1] == 1 else values.to_numpy()
    if isinstance(values, pd.Series):
        values = values.to_numpy()
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1)
    return array[:max_rows].tolist()


def example(path: str, max_rows: int):
    """The input example MLflow logged with the model whose MLmodel is in ``path``."""
    from mlflow.models import Model

    found = Model.load(path).load_input_example(path)
    if found is None:
        raise ValueError("the model has no input example")
    if hasattr(found, "iloc"):
        found = found.iloc[:max_rows]
    return found


CHUNK, LATENCY_SAMPLE = 5000, 100


def probabilities(model):
    """The class probabilities of a model that offers them (scikit-learn's ``predict_proba``
    behind the pyfunc), else None."""
    try:
        raw = model.get_raw_model()
    except Exception:  # noqa: BLE001 - not every flavour exposes its model
        return None
    method = getattr(raw, "predict_proba", None)
    return method if callable(method) else None


def signature_columns(model, frame) -> list[str] | None:
    """The columns the model's signature names, when the dataset has them all (a dataset holds
    slices and other columns a model does not take, as a serving request would not send them)."""
    try:
        schema = model.metadata.get_input_schema()
        names = schema.input_names() if schema is not None and schema.has_input_names() else None
    except Exception:  # noqa: BLE001 - no usable signature: every column is passed
        return None
    return [str(n) for n in names] if names and all(n in frame.columns for n in names) else None


def predict_dataset(model, path: str, out: str) -> dict:
    """Predict every row of the features at ``path``; the answer written to ``out``."""
    import pandas as pd

    frame = pd.read_parquet(path)
    frame = frame[inputs] if (inputs := signature_columns(model, frame)) else frame
    proba = probabilities(model)
    predictions: list = []
    probs: list | None = [] if proba is not None else None
    started = time.perf_counter()
    for start in range(0, len(frame), CHUNK):
        chunk = frame.iloc[start : start + CHUNK]
        predictions.extend(plain(model.predict(chunk), len(chunk)))
        if probs is not None and proba is not None:
            probs.extend(plain(proba(chunk), len(chunk)))
    seconds = time.perf_counter() - started
    latency = []
    for i in range(min(LATENCY_SAMPLE, len(frame))):
        one = time.perf_counter()
        model.predict(frame.iloc[i : i + 1])
        latency.append(1000 * (time.perf_counter() - one))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as file:
        json.dump({"predictions": predictions, "probabilities": probs, "latency_ms": latency}, file, default=str)
    return {"rows": len(frame), "seconds": seconds, "file": out}


def main() -> None:
    answer = os.dup(1)
    os.dup2(2, 1)  # what the model prints goes to stderr, never into the answer
    job = json.loads(sys.stdin.read(1 << 20))
    max_rows = int(job.get("max_rows", 1000))
    result: dict = {"load": None, "examples": {}}
    inputs = {}
    for name, path in job["examples"].items():
        try:
            inputs[name] = example(path, max_rows)
        except Exception as exc:  # noqa: BLE001 - an unreadable example is reported, not fatal
            result["examples"][name] = {"unreadable": describe(exc)}
    started = time.perf_counter()
    try:
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(job["model"])
    except BaseException as exc:  # noqa: BLE001 - the author's code may raise anything, SystemExit included
        result["load"] = {"error": describe(exc)}
    else:
        result["load"] = {"seconds": time.perf_counter() - started}
        for name, frame in inputs.items():
            started = time.perf_counter()
            try:
                predicted = plain(model.predict(frame), max_rows)
                rows = len(frame) if hasattr(frame, "__len__") else len(predicted)
                result["examples"][name] = {"rows": rows, "predictions": predicted, "seconds": time.perf_counter() - started}
            except BaseException as exc:  # noqa: BLE001 - the author's code may raise anything
                result["examples"][name] = {"error": describe(exc)}
        result["datasets"] = {}
        for name, path in (job.get("datasets") or {}).items():
            try:
                result["datasets"][name] = predict_dataset(model, path, f"answers/{name}.json")
            except BaseException as exc:  # noqa: BLE001 - the author's code may raise anything
                result["datasets"][name] = {"error": describe(exc)}
    with os.fdopen(answer, "w") as out:
        json.dump(result, out, default=str)


if __name__ == "__main__":
    main()
