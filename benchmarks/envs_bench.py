"""What ``CHECKPOINT_EVALUATOR_ENV=uv`` costs against ``local`` (runtime/envs.py): one isolated run
of a scikit-learn model on its input example with Checkpoint's own Python, then with the model's
own environment built with an empty uv cache, built again with uv's cache warm, and reused.

Needs no MLflow server: the model is saved to a scratch directory and run as the behavioural
diff runs it (``Runner.run_side``). Usage: ``python benchmarks/envs_bench.py`` (it downloads the
model's wheels from the package index once, into a scratch uv cache it removes at the end).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from checkpoint.review.behaviour.runner import Runner
from checkpoint.runtime import envs, sandbox


def save_model(into: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    model = LogisticRegression().fit(frame, (frame["a"] > 0).astype(int))
    mlflow.sklearn.save_model(model, str(into), input_example=frame.iloc[:10])


def timed_run(runner: Runner, work: Path, sources: Path, label: str) -> tuple[float, dict]:
    root = work / label
    root.mkdir()
    root.chmod(0o711)
    started = time.monotonic()
    answer = runner.run_side(root, sources, "challenger", {"challenger": None})  # type: ignore[dict-item]
    seconds = time.monotonic() - started
    assert "error" not in answer, answer
    return seconds, answer


def main() -> None:
    uv = envs.find_uv()
    assert uv, "uv is not installed (pip install 'checkpoint-mlflow[envs]')"
    isolation, limits = sandbox.detect(), sandbox.Limits(timeout=300)
    with tempfile.TemporaryDirectory(prefix="envs-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o711)
        sources = work / "sources"
        save_model(sources / "challenger")
        print("requirements:", ", ".join((sources / "challenger" / "requirements.txt").read_text().split()))
        rows = [("local (Checkpoint's Python)", *timed_run(Runner(isolation, limits), work, sources, "local"), "-")]
        built = envs.Envs(work / "envs", uv, work / "uv-cache", sandbox.Limits(timeout=900, memory_mb=16384, file_bytes=4 << 30))
        runner = Runner(isolation, limits, envs=built)
        seconds, answer = timed_run(runner, work, sources, "uv-cold")
        (env,) = [p for p in built.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        rows.append(("uv, first build, empty uv cache", seconds, answer, f"{envs.size_mb(env)} MB env"))
        shutil.rmtree(env)
        seconds, answer = timed_run(runner, work, sources, "uv-warm")
        rows.append(("uv, first build, warm uv cache", seconds, answer, "hard links to the cache"))
        seconds, answer = timed_run(runner, work, sources, "uv-reuse")
        rows.append(("uv, environment cached", seconds, answer, "-"))
        print(f"uv download cache: {envs.size_mb(work / 'uv-cache')} MB")
        print("| mode | time to the answer | model load in the run | disk |")
        print("|---|---|---|---|")
        for label, seconds, answer, disk in rows:
            print(f"| {label} | {seconds:.1f} s | {answer['load_seconds']:.2f} s | {disk} |")


if __name__ == "__main__":
    main()
