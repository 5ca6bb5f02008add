"""What a behavioural diff costs: two scikit-learn classifiers (logistic regressions on 8 columns)
compared on their input examples only, then also on an evaluation dataset of 10,000 and of
100,000 rows, each through the real path (files downloaded from a real ``mlflow server`` with
served artifacts, each model and the scorer in isolated processes).

Per case, measured in a fresh process that does only the diff: seconds to the result, the
parent's peak RSS (the process holding the secrets: downloads, orchestration) and the largest
child's peak RSS (a model run or the scorer; ``RUSAGE_CHILDREN``). Bounded: one run per case,
each model run and scorer under the evaluator's default limits (120 s, 2 GiB).

Then the page latency while a diff runs: ``checkpoint serve`` (gunicorn, as deployed: one worker,
its background thread running the diffs) in front of the same MLflow, a request's page fetched
``GETS`` times in a row when nothing runs, then as many times while the 100,000-row diff of another
request runs (only the GETs started before it finished count), p50/p95/max of each. Loopback only;
every wait bounded in count and time.

    python benchmarks/behaviour_bench.py [--latency-only]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import Checkpoint, load_average, percentile

CASES = (("examples only", 0), ("+10k rows", 10_000), ("+100k rows", 100_000))
COLUMNS = [f"x{i}" for i in range(8)]
GETS = 200  # page fetches per phase
PHASE_SECONDS = 300.0  # and at most this long per phase
NICE = (0, 10)  # CHECKPOINT_EVALUATOR_NICE: the evaluator at the pages' priority, then the default
POLICY = """
rules:
  - name: bench
    models: [bench]
    targets: ["alias:champion"]
    evaluation:
      - {{name: holdout, uri: "{uri}", target: label, slices: [segment], max_rows: 1000000}}
"""


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
    for c in (1.0, 0.05, 0.3):  # the champion, the diffs' challenger, the latency run's second one
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


def _until(what: str, seconds: float, check):
    """``check()`` once a second until it gives something true, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1.0)
    raise TimeoutError(f"{what}: not within {seconds:.0f} s")


class Served:
    """``checkpoint serve`` (``common.Checkpoint``: one gunicorn worker, its background thread on)."""

    def __init__(self, mlflow_url: str, root: Path, uri: str, nice: int) -> None:
        import requests

        root.mkdir()
        (root / "policy.yaml").write_text(POLICY.format(uri=uri))
        env = {"CHECKPOINT_POLICY_FILE": str(root / "policy.yaml"), "CHECKPOINT_WORKERS": "1"}
        env["CHECKPOINT_EVALUATOR_NICE"] = str(nice)
        self.server = Checkpoint(root / "data", mlflow_url, env).start()
        self.url, self.mlflow_url = self.server.url, mlflow_url
        self.http = requests.Session()
        self.http.auth = ("alice", "x")

    def ask(self, version: str) -> int:
        change = {"kind": "set_alias", "name": "bench", "alias": "champion", "version": version}
        answer = self.http.post(f"{self.url}/checkpoint/api/v1/requests", json={"change": change}, timeout=120)
        answer.raise_for_status()
        return answer.json()["id"]

    def behaviour(self, request_id: int) -> dict:
        answer = self.http.get(f"{self.url}/checkpoint/api/v1/requests/{request_id}", timeout=60)
        answer.raise_for_status()
        return answer.json()["behaviour"]

    def page_times(self, request_id: int) -> list[tuple[float, float, float]]:
        """(wall-clock start, seconds, control seconds) of up to ``GETS`` fetches of the request's
        page in a row, each followed by one of MLflow's ``/health`` (the control: another process
        on the same machine, which Checkpoint's work cannot slow but the machine's load does)."""
        out: list[tuple[float, float, float]] = []
        deadline = time.monotonic() + PHASE_SECONDS
        while len(out) < GETS and time.monotonic() < deadline:
            started, wall = time.perf_counter(), time.time()
            answer = self.http.get(f"{self.url}/checkpoint/requests/{request_id}", headers={"Accept": "text/html"}, timeout=60)
            answer.raise_for_status()
            page = time.perf_counter() - started
            started = time.perf_counter()
            self.http.get(f"{self.mlflow_url}/health", timeout=60).raise_for_status()
            out.append((wall, page, time.perf_counter() - started))
        return out

    def close(self) -> None:
        self.server.stop()


def _row(label: str, times: list[tuple[float, float, float]]) -> str:
    page, control = [1000 * t[1] for t in times], [1000 * t[2] for t in times]
    cells = [percentile(page, 50), percentile(page, 95), max(page), percentile(control, 50), percentile(control, 95)]
    return f"| {label} | {len(times)} | " + " | ".join(f"{c:.1f}" for c in cells) + " |"


def latency(mlflow_url: str, versions: list[str], uri: str, root: Path, nice: int) -> list[str]:
    """The request page's latency with nothing running, then while a 100,000-row diff runs (its
    processes at CPU priority ``nice``), then with nothing running again: the table's rows."""
    served = Served(mlflow_url, root, uri, nice)
    try:
        first = served.ask(versions[1])
        _until("the first diff done", 900, lambda: served.behaviour(first)["state"] in ("done", "error"))
        assert served.behaviour(first)["state"] == "done", served.behaviour(first)
        idle = served.page_times(first)
        second = served.ask(versions[2])
        _until("the second diff running", 120, lambda: served.behaviour(second)["state"] == "running")
        during = served.page_times(first)
        shown = _until("the second diff done", 900, lambda: (b := served.behaviour(second))["finished_at"] and b)
        assert shown["state"] == "done", shown
        finished = datetime.fromisoformat(shown["finished_at"]).timestamp()
        running = [t for t in during if t[0] < finished]
        after = served.page_times(first)
    finally:
        served.close()
    return [
        _row(f"nice {nice}: nothing running", idle),
        _row(f"nice {nice}: a 100,000-row diff running", running),
        _row(f"nice {nice}: nothing running, after", after),
    ]


def main() -> None:
    from checkpoint.demo.mlflow_server import MlflowServer

    with tempfile.TemporaryDirectory() as tmp, MlflowServer(Path(tmp) / "mlflow") as server:
        setup = _setup(server.url, Path(tmp))
        print("| Request page (evaluator's CPU priority) | GETs | p50 (ms) | p95 (ms) | max (ms) | control p50 | control p95 |")
        print("|---|---|---|---|---|---|---|", flush=True)
        for nice in NICE:
            for line in latency(server.url, setup["versions"], setup["uris"][100_000], Path(tmp) / f"served-{nice}", nice):
                print(line, flush=True)
        print(f"(load average {load_average():.2f} at the end; control: MLflow's /health after each page)", flush=True)
        if "--latency-only" in sys.argv:
            return
        print()
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
