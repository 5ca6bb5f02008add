"""What guarding artifact writes costs: small uploads direct vs through Checkpoint.

Before an artifact write or delete passes, Checkpoint asks MLflow which registered versions'
files the path reaches (checkpoint/content.py); reads pay nothing. A training job uploads one
PUT per file, so the lookup is paid once per file. For each MLflow server shape (stock
uvicorn with 4 workers, and ``--workers 1``, which has no keep-alive stall) this measures,
one call after another on one keep-alive connection:

a. PUT of a 4 KiB file into a run nobody registered (passes: the lookup's full cost);
b. GET of that file (no lookup: the proxy's own cost, for scale);
c. PUT into a registered version's files (refused with 403).

Loopback only; each phase is bounded by CALLS and PHASE_SECONDS.
"""

from __future__ import annotations

import http.client
import tempfile
import time
from pathlib import Path

from common import ARTIFACTS, Checkpoint, bench_parser, host_port, load_average, percentile, publish

from checkpoint.demo.mlflow_server import MlflowServer

CALLS = 200
PHASE_SECONDS = 60.0
BODY = b"x" * 4096


def timed_calls(base: str, method: str, paths: list[str], body: bytes | None, expect: int) -> list[float]:
    """Milliseconds per call, on one keep-alive connection; stops at CALLS or PHASE_SECONDS."""
    conn = http.client.HTTPConnection(*host_port(base), timeout=30)
    out: list[float] = []
    started = time.perf_counter()
    try:
        for i in range(CALLS):
            if time.perf_counter() - started > PHASE_SECONDS:
                break
            path = paths[i % len(paths)]
            begin = time.perf_counter()
            conn.request(method, path, body=body, headers={"Content-Type": "application/octet-stream"} if body else {})
            try:
                answer = conn.getresponse()
            except http.client.RemoteDisconnected as exc:
                raise RuntimeError(f"{method} {base}{path}: call {i + 1} found the connection closed") from exc
            answer.read()
            out.append((time.perf_counter() - begin) * 1000)
            if answer.status != expect:
                raise RuntimeError(f"{method} {path}: {answer.status}, expected {expect}")
    finally:
        conn.close()
    return out


def registered_run(mlflow_url: str) -> tuple[str, str, str]:
    """(experiment, a run nobody registered, a registered version's files folder)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    experiment = client.create_experiment(f"guard-bench-{time.time_ns()}")
    free = client.create_run(experiment).info.run_id
    held = client.create_run(experiment).info.run_id
    client.create_registered_model("guard-bench")
    version = client.create_model_version("guard-bench", f"mlflow-artifacts:/{experiment}/{held}/artifacts/model", run_id=held)
    folder = version.source.split(":", 1)[1].strip("/")
    return experiment, free, folder


def measure(workers: int, root: Path) -> list[tuple[str, str, float, float]]:
    rows = []
    mlflow = MlflowServer(root / f"mlflow-{workers}", workers=workers).start()
    checkpoint = Checkpoint(root / f"checkpoint-{workers}", mlflow.url).start()
    try:
        experiment, free, folder = registered_run(mlflow.url)
        passes = [f"{ARTIFACTS}/{experiment}/{free}/artifacts/files/f{i}.bin" for i in range(CALLS)]
        refused = [f"{ARTIFACTS}/{folder}/weights.bin"]
        for name, base in (("direct", mlflow.url), ("checkpoint", checkpoint.url)):
            for label, method, paths, body, expect in (
                ("PUT, passes", "PUT", passes, BODY, 200),
                ("GET", "GET", passes, None, 200),
                ("PUT, registered", "PUT", refused, BODY, 403 if name == "checkpoint" else 200),
            ):
                times = timed_calls(base, method, paths, body, expect)
                rows.append((f"{label} ({name})", f"workers={workers}", percentile(times, 50), percentile(times, 90)))
    finally:
        checkpoint.stop()
        mlflow.stop()
    return rows


def main() -> None:
    global CALLS
    args = bench_parser(__doc__, "50 calls per phase instead of 200", "artifact_guard.md").parse_args()
    if args.quick:
        CALLS = 50
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for workers in (4, 1) for row in measure(workers, Path(tmp))]
    lines = ["| call | MLflow | p50 ms | p90 ms |", "|---|---|---|---|"]
    lines += [f"| {label} | {shape} | {p50:.1f} | {p90:.1f} |" for label, shape, p50, p90 in rows]
    lines.append(f"\nload average after: {load_average()}")
    publish("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
