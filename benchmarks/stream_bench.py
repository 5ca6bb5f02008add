"""Gigabytes of artifacts streamed through Checkpoint, with its memory sampled every second.

    .venv/bin/python benchmarks/stream_bench.py                 # 10 GiB: 10 × 1 GiB up and down
    .venv/bin/python benchmarks/stream_bench.py --quick         # 1 GiB: 4 × 256 MiB
    .venv/bin/python benchmarks/stream_bench.py --gib 3 --file-mib 512

A real ``mlflow server`` with served artifacts and ``checkpoint serve`` (default settings) in
front of it, on loopback. Each file is generated on the fly 1 MiB at a time from one reused
buffer (never held whole in memory), PUT through MLflow's artifact proxy
(``/api/2.0/mlflow-artifacts/artifacts/...``) with a Content-Length, read back with a GET
into one reused buffer and checked by size and CRC-32, then deleted (DELETE through
Checkpoint; the file is also checked gone from MLflow's store) before the next one, so the
disk holds at most one file. Checkpoint's RSS (gunicorn master + workers, /proc) is sampled
every second throughout: reported at start, at its maximum and at the end, and per file.
Target: flat RSS (maximum within 64 MiB of the start). Free disk is checked first.
"""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from common import ARTIFACTS, GIB, MIB, Artifact, Checkpoint, RssSampler, bench_parser, host_port, load_average, publish, servers

RSS_TARGET = 64 * MIB
FILE_TIMEOUT = 900.0  # seconds for one upload or one download: a bound, not an expectation


@dataclass
class FileResult:
    index: int
    size: int
    upload_s: float
    download_s: float
    started: float  # seconds since sampling began
    ended: float
    rss_max: int = 0

    @property
    def up_mibs(self) -> float:
        return self.size / MIB / self.upload_s

    @property
    def down_mibs(self) -> float:
        return self.size / MIB / self.download_s


def delete(url: str, path: str) -> int:
    conn = http.client.HTTPConnection(*host_port(url), timeout=60)
    try:
        conn.request("DELETE", f"{ARTIFACTS}/{path}")
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def check_disk(where: Path, file_size: int) -> str:
    """Room for one file in MLflow's store, with a margin; the answer says what was free."""
    free = shutil.disk_usage(where).free
    if free < file_size + 2 * GIB:
        raise SystemExit(f"only {free / GIB:.1f} GiB free under {where}: need {file_size / GIB + 2:.1f} GiB")
    return f"{free / GIB:.0f} GiB free under {where}"


def stream(checkpoint: Checkpoint, store: Path, files: int, size: int) -> tuple[list[FileResult], RssSampler]:
    artifact = Artifact(size)
    results: list[FileResult] = []
    with RssSampler(checkpoint, interval=1.0) as sampler:
        started = time.monotonic()
        for index in range(files):
            path = f"stream-bench/{os.getpid()}/{index}.bin"
            begin = time.monotonic() - started
            up, down = artifact.round_trip(checkpoint.url, path, FILE_TIMEOUT)
            status = delete(checkpoint.url, path)
            stored = store / path
            if stored.exists():  # MLflow did not delete it: do it ourselves, the disk must not fill
                print(f"  DELETE answered {status} and left {stored}: removed directly", flush=True)
                stored.unlink()
            result = FileResult(index + 1, size, up, down, begin, time.monotonic() - started)
            results.append(result)
            print(
                f"  file {result.index}/{files}: up {result.up_mibs:.0f} MiB/s, down {result.down_mibs:.0f} MiB/s, "
                f"RSS now {sampler.now() / MIB:.0f} MiB",
                flush=True,
            )
    for result in results:
        inside = [rss for at, rss in sampler.series if result.started <= at <= result.ended + 1]
        result.rss_max = max(inside or [0])
    return results, sampler


def report(results: list[FileResult], sampler: RssSampler, rss_idle: int, facts: str, quick: bool) -> str:
    start, end = sampler.series[0][1], sampler.series[-1][1]
    peak = max(rss for _, rss in sampler.series)
    total = sum(r.size for r in results)
    size = results[0].size
    label = f"{size // GIB} GiB" if size % GIB == 0 else f"{size // MIB} MiB"
    lines = [
        f"## Stream benchmark{' (quick)' if quick else ''}: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        facts,
        "",
        f"| file ({label}) | upload MiB/s | download MiB/s | upload s | download s | Checkpoint RSS max MiB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.index} | {r.up_mibs:.0f} | {r.down_mibs:.0f} | {r.upload_s:.1f} | {r.download_s:.1f} | {r.rss_max / MIB:.0f} |"
        )
    lines += [
        f"| median | {statistics.median(r.up_mibs for r in results):.0f} | "
        f"{statistics.median(r.down_mibs for r in results):.0f} | | | |",
        "",
        f"{total / GIB:.2f} GiB each way ({2 * total / GIB:.2f} GiB through Checkpoint), every file checked by size "
        f"and CRC-32. Checkpoint RSS (master + workers, {len(sampler.series)} samples, one a second): idle before "
        f"{rss_idle / MIB:.0f} MiB, at start {start / MIB:.0f} MiB, max {peak / MIB:.0f} MiB, "
        f"at end {end / MIB:.0f} MiB.",
        "",
        "| target | measured | result |",
        "|---|---:|:---:|",
        f"| RSS flat: max within 64 MiB of the start | {(peak - start) / MIB:+.0f} MiB | "
        f"{'PASS' if peak - start < RSS_TARGET else 'FAIL'} |",
        f"| RSS back down: end within 16 MiB of the start | {(end - start) / MIB:+.0f} MiB | "
        f"{'PASS' if end - start < 16 * MIB else 'FAIL'} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "1 GiB in 4 files of 256 MiB", "stream.md")
    parser.add_argument("--gib", type=float, help="total size each way, in GiB (default 10)")
    parser.add_argument("--file-mib", type=int, help="size of one file in MiB (default 1024)")
    parser.add_argument("--mlflow-workers", type=int, help="uvicorn workers of MLflow (default: MLflow's own, 4)")
    args = parser.parse_args(argv)
    gib = args.gib or (1.0 if args.quick else 10.0)
    file_mib = args.file_mib or (256 if args.quick else 1024)
    if not 1 <= file_mib <= 64 * 1024 or not 0 < gib <= 1024:
        parser.error("--file-mib must be 1..65536 and --gib 0..1024")
    size = file_mib * MIB
    files = max(1, round(gib * GIB / size))
    load_before = load_average()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="checkpoint-stream-") as name:
        tmp = Path(name)
        disk = check_disk(tmp, size)
        print(f"== {files} × {file_mib} MiB up and down through Checkpoint ({disk})", flush=True)
        with servers(tmp, args.mlflow_workers) as (mlflow, checkpoint):
            time.sleep(1)  # idle figure after start-up settles
            rss_idle = RssSampler(checkpoint).now()
            results, sampler = stream(checkpoint, mlflow.root / "mlartifacts", files, size)
            workers = len(checkpoint.pids()) - 1
    from importlib.metadata import version

    facts = (
        f"{files} file{'s' if files > 1 else ''} of {file_mib} MiB, each PUT then GET through Checkpoint "
        "(`checkpoint serve`, default settings: "
        f"{workers} workers + master) in front of `mlflow server` ({args.mlflow_workers or 'default'} workers, "
        f"served artifacts), loopback; {disk}. mlflow {version('mlflow')}, {os.cpu_count()} cores shared by all; "
        f"load average (1 min) {load_before:.1f} before, {load_average():.1f} after; {(time.monotonic() - started) / 60:.1f} "
        "min in all."
    )
    publish(report(results, sampler, rss_idle, facts, args.quick), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
