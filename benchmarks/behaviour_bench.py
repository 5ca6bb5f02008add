"""What a behavioural diff costs: two scikit-learn classifiers (logistic regressions on 8 columns)
compared on their input examples only, then also on an evaluation dataset of 10,000 and of
100,000 rows, each through the real path (files downloaded from a real ``mlflow server`` with
served artifacts, each model and the scorer in isolated processes).

Per case, measured in a fresh process that does only the diff: seconds to the result, the
parent's peak RSS (the process holding the secrets: downloads, orchestration) and the largest
child's peak RSS (a model run or the scorer; ``RUSAGE_CHILDREN``). Bounded: one run per case,
each model run and scorer under the evaluator's default limits (120 s, 2 GiB).

    python benchmarks/behaviour_bench.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = (("examples only", 0), ("+10k rows", 10_000), ("+100k rows", 100_000))
COLUMNS = [f"x{i}" for i in range(8)]


def _frame(rows: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data = pd.DataFrame({c: rng.normal(size=rows) for c in COLUMNS})
    data["segment"] = np.where(data["x0"] > 0, "a", "b")
    data["label"] = ((data["x0"] + 0.5 * data["x1"] + rng.normal(scale=0.8, size=rows)) > 0).astype(int)
    return data


def _setup(url: str, tmp: Path) -> dict:
    """Two registered classifiers and the datasets; the ids the measuring process needs."""
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    os.environ["MLFLOW_TRACKING_URI"] = url
    train = _frame(2000, 0)
    versions = []
    for c in (1.0, 0.05):
        model = LogisticRegression(C=c).fit(train[COLUMNS], train["label"])
        with mlflow.start_run():
            example = train[COLUMNS].iloc[:20]
            info = mlflow.sklearn.log_model(model, name="model", input_example=example, registered_model_name="bench")
        versions.append(str(info.registered_model_version))
    MlflowClient(url).set_registered_model_alias("bench", "champion", versions[0])
    uris = {}
    for _, rows in CASES:
        if rows:
            path = tmp / f"holdout-{rows}.parquet"
            _frame(rows, 7).to_parquet(path)
            with mlflow.start_run() as run:
                mlflow.log_artifact(str(path), artifact_path="eval")
            uris[rows] = f"runs:/{run.info.run_id}/eval/{path.name}"
    return {"versions": versions, "uris": uris}


def measure(url: str, versions: list[str], uri: str | None) -> dict:
    """One diff, in this (fresh) process."""
    from checkpoint.registry import Registry
    from checkpoint.review.behaviour.datasets import Datasets
    from checkpoint.review.behaviour.evaluation import EvaluationSet
    from checkpoint.review.behaviour.runner import Runner
    from checkpoint.runtime import sandbox

    registry = Registry(url)
    runner = Runner(sandbox.detect(), sandbox.Limits())
    sides = {"champion": registry.version("bench", versions[0]), "challenger": registry.version("bench", versions[1])}
    started = time.monotonic()
    if uri is None:
        runs = runner.run(registry, sides)
        datasets: list[dict] = []
    else:
        entry = EvaluationSet("holdout", uri, "label", ("segment",), 1_000_000)
        with tempfile.TemporaryDirectory() as tmp:
            runs, datasets = Datasets(runner).run(registry, sides, (entry,), Path(tmp), lambda d, e: None, lambda d, e, s: None)
    seconds = time.monotonic() - started
    errors = [r.get("error") for r in runs.values() if r and r.get("error")] + [d["error"] for d in datasets if "error" in d]
    return {
        "seconds": round(seconds, 2),
        "parent_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "child_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "isolation": runner.isolation.mode,
        "rows": datasets[0].get("rows") if datasets else None,
        "errors": errors,
    }


def main() -> None:
    from checkpoint.demo.mlflow_server import MlflowServer

    with tempfile.TemporaryDirectory() as tmp, MlflowServer(Path(tmp) / "mlflow") as server:
        setup = _setup(server.url, Path(tmp))
        print("| Case | Seconds to result | Parent peak RSS (MB) | Largest child peak RSS (MB) |")
        print("|---|---|---|---|")
        for label, rows in CASES:
            job = json.dumps([server.url, setup["versions"], setup["uris"].get(rows)])
            code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import behaviour_bench as b; "
            code += f"print(json.dumps(b.measure(*json.loads({job!r}))))"
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=True)
            got = json.loads(done.stdout.strip().splitlines()[-1])
            assert not got["errors"], got
            print(f"| {label} | {got['seconds']} | {got['parent_mb']} | {got['child_mb']} |", flush=True)


if __name__ == "__main__":
    main()
