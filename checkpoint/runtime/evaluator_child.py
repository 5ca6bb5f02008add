"""The program one isolated model run executes (``runtime/sandbox.py`` starts it, as
``python -I -B evaluator_child.py``, in a scratch directory holding one model's files).

It imports nothing of Checkpoint: it runs where Checkpoint's secrets are not, and what it
writes back is plain JSON data the parent checks before using. The job arrives on stdin:
``{"model": <dir>, "examples": {<name>: <dir holding MLmodel and its input example>},
"max_rows": n}``. It loads the model with MLflow's pyfunc loader, predicts on each input
example, and writes one JSON object to the stdout it was started with; the model's own
prints go to stderr (the parent keeps only their tail).
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
    with os.fdopen(answer, "w") as out:
        json.dump(result, out, default=str)


if __name__ == "__main__":
    main()
