"""Operations under `checkpoint serve`: metrics added up across workers, JSON logs carrying the
request id MLflow received, and a graceful stop that lets streams in flight finish."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import sessionmaker

from checkpoint import create_app
from checkpoint.runtime import metrics
from checkpoint.storage import db
from checkpoint.storage.store import Store
from tests.support.apps import close_app
from tests.support.governed import make_model
from tests.support.proxy import CheckpointProcess, FakeUpstream, checkpoint_process, pattern, sha256
from tests.support.waiting import poll, wait_until

SEARCH = "/api/2.0/mlflow/registered-models/search?max_results=1"


# -- helpers ---------------------------------------------------------------------------


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /checkpoint/metrics as {(name, sorted labels): value}."""
    answer = requests.get(f"{base}/checkpoint/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def json_lines(path: Path) -> list[dict]:
    """Every line of a log file, each of which must be one JSON object."""
    text = path.read_text(errors="replace") if path.exists() else ""
    out = []
    for line in text.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail(f"{path.name} has a line that is not JSON: {line!r}")
    return out


def wait_lines(path: Path, match, *, timeout: float = 15.0) -> list[dict]:
    """The JSON lines of ``path`` for which ``match`` is true, once there is at least one."""
    return poll(lambda: [line for line in json_lines(path) if match(line)], timeout=timeout)


def metrics_dir(served: CheckpointProcess) -> Path:
    """The private multi-process directory `checkpoint serve` made (it says so at start)."""
    prefix = "metrics: multi-process directory "
    lines = wait_lines(served.log_path, lambda line: line["message"].startswith(prefix))
    assert len(lines) == 1, lines
    return Path(lines[0]["message"][len(prefix) :])


def worker_pids(served: CheckpointProcess) -> set[int]:
    children = Path(f"/proc/{served.process.pid}/task/{served.process.pid}/children").read_text()
    return {int(pid) for pid in children.split()}


@pytest.fixture(scope="module")
def served(mlflow_server, tmp_path_factory) -> Iterator[CheckpointProcess]:
    """`checkpoint serve` with two workers in front of the session's MLflow."""
    with checkpoint_process(mlflow_server.url, tmp_path_factory.mktemp("operations")) as process:
        yield process


# -- metrics ---------------------------------------------------------------------------


def test_metrics_add_up_every_workers_calls(served):
    directory = metrics_dir(served)
    assert directory.is_dir()
    before = scrape(served.url)
    made = 0
    # Separate connections, eight at a time, until both workers have counted some (bounded).
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            answers = list(pool.map(lambda _: requests.get(served.url + SEARCH, timeout=30).status_code, range(16)))
            assert answers == [200] * 16
            made += 16
            counted = {int(re.fullmatch(r"counter_(\d+)\.db", p.name).group(1)) for p in directory.glob("counter_*.db")}
            if len(counted & worker_pids(served)) == 2:
                break
    assert len(counted & worker_pids(served)) == 2, f"only {counted} of {worker_pids(served)} served a call"
    after = scrape(served.url)
    counted_calls = sample(after, "checkpoint_requests_total", route="api_read", status="200") - sample(
        before, "checkpoint_requests_total", route="api_read", status="200"
    )
    assert counted_calls == made  # exactly, though two processes served them
    # Each proxied call's time to MLflow's first byte was observed once, in whichever worker.
    grew = sample(after, "checkpoint_upstream_seconds_count", route="api_read") - sample(
        before, "checkpoint_upstream_seconds_count", route="api_read"
    )
    assert grew == made
    assert sample(after, "checkpoint_upstream_seconds_bucket", route="api_read", le="+Inf") >= made
    # The scrapes themselves count as Checkpoint's own calls, never as MLflow traffic.
    assert sample(after, "checkpoint_requests_total", route="checkpoint", status="200") >= 1
    assert sample(after, "checkpoint_database_up") == 1
    assert ("checkpoint_webhook_backlog", ()) in after


def test_metrics_count_governed_calls_and_open_requests(served, mlflow_server):
    name, versions = make_model(mlflow_server.url, versions=1)
    call = {"name": name, "alias": "champion", "version": versions[0]}
    before = scrape(served.url)
    first = requests.post(f"{served.url}/api/2.0/mlflow/registered-models/alias", json=call, auth=("carol", "x"), timeout=30)
    again = requests.post(f"{served.url}/api/2.0/mlflow/registered-models/alias", json=call, auth=("carol", "x"), timeout=30)
    assert (first.status_code, again.status_code) == (403, 403), first.text
    assert first.json()["checkpoint"]["action"] == "request_opened"
    assert again.json()["checkpoint"]["action"] == "request_exists"
    after = scrape(served.url)

    def grew(metric: str, **labels: str) -> float:
        return sample(after, metric, **labels) - sample(before, metric, **labels)

    assert grew("checkpoint_governed_calls_total", kind="set_alias", outcome="opened") == 1
    assert grew("checkpoint_governed_calls_total", kind="set_alias", outcome="existing") == 1
    assert grew("checkpoint_requests_total", route="governed", status="403") == 2
    engine = db.make_engine(f"sqlite:///{served.data_dir / 'checkpoint.db'}")
    try:
        store = Store(sessionmaker(engine, expire_on_commit=False))
        open_now, failed_now = store.count(state="open"), store.count(state="failed")
    finally:
        engine.dispose()
    assert open_now >= 1
    assert sample(after, "checkpoint_promote_requests", state="open") == open_now
    assert sample(after, "checkpoint_promote_requests", state="failed") == failed_now


def test_metrics_need_no_login_and_any_host(served):
    answer = requests.get(f"{served.url}/checkpoint/metrics", headers={"Host": "prometheus.internal"}, timeout=10)
    assert answer.status_code == 200
    assert "checkpoint_requests_total" in answer.text


def test_metrics_in_one_process_need_no_login(mlflow_server, sqlite_url, tmp_path):
    """Without gunicorn (werkzeug, tests) the counts live in the process; the scrape is public."""
    app = create_app(
        {
            "registry_url": mlflow_server.url,
            "database_url": sqlite_url,
            "data_dir": tmp_path,
            "auth": "header",
            "trusted_proxies": "10.9.9.9/32",
        }
    )
    client = app.test_client()
    assert client.get("/checkpoint/api/v1/requests").status_code == 401
    before = text_string_to_metric_families(client.get("/checkpoint/metrics").get_data(as_text=True))
    counted = {tuple(s.labels.items()): s.value for f in before for s in f.samples if s.name == "checkpoint_requests_total"}
    answer = client.get("/checkpoint/metrics")
    assert answer.status_code == 200
    after = {
        tuple(s.labels.items()): s.value
        for f in text_string_to_metric_families(answer.get_data(as_text=True))
        for s in f.samples
        if s.name == "checkpoint_requests_total"
    }
    key = (("route", "checkpoint"), ("status", "200"))
    assert after[key] - counted.get(key, 0) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-Id"])
    close_app(app)


# -- logs and the request id -----------------------------------------------------------


@pytest.fixture(scope="module")
def fronting(upstream, tmp_path_factory) -> Iterator[CheckpointProcess]:
    """`checkpoint serve` in front of the fake upstream, which records the headers it got."""
    with checkpoint_process(upstream.url, tmp_path_factory.mktemp("operations-fake")) as process:
        yield process


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("trace-7f3a.B_9", True),
        ("x" * 128, True),
        (None, False),
        ("x" * 129, False),
        ("two words", False),
        ('quote"d', False),
        ("", False),
    ],
    ids=["token", "128-chars", "none", "129-chars", "space", "quote", "empty"],
)
def test_request_id_reaches_mlflow_the_answer_and_the_access_line(fronting, upstream, sent, kept):
    marker = uuid.uuid4().hex
    headers = {"X-Request-Id": sent} if sent is not None else {}
    answer = requests.get(f"{fronting.url}/echo/{marker}", headers=headers, auth=("dana", "x"), timeout=30)
    assert answer.status_code == 200
    (seen,) = upstream.requests_to(marker)
    given = answer.headers["X-Request-Id"]
    assert seen.header("X-Request-Id") == given
    if kept:
        assert given == sent
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", given), given
    (line,) = wait_lines(fronting.access_log, lambda line: marker in (line.get("path") or ""))
    assert line["request_id"] == given
    assert (line["method"], line["path"], line["status"], line["user"]) == ("GET", f"/echo/{marker}", 200, "dana")
    assert line["bytes"] == len(answer.content)
    assert line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["logger"] == "gunicorn.access" and line["timestamp"].endswith("Z")


def test_checkpoint_log_lines_are_json_with_the_request_id(fronting, upstream):
    marker = uuid.uuid4().hex
    rid = f"drop-{marker}"
    answer = requests.get(f"{fronting.url}/drop/{marker}", headers={"X-Request-Id": rid}, timeout=30)
    assert answer.status_code == 502
    assert answer.headers["X-Request-Id"] == rid
    (line,) = wait_lines(fronting.log_path, lambda line: line["request_id"] == rid and line["logger"] == "checkpoint.proxy")
    assert line["level"] == "WARNING"
    assert f"/drop/{marker}" in line["message"]
    # Every line either process wrote, gunicorn's own included, is one JSON object.
    lines = json_lines(fronting.log_path)
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    assert all({"timestamp", "level", "logger", "message", "request_id"} <= set(line) for line in lines)


def test_text_format_keeps_the_classic_lines(upstream, tmp_path):
    with checkpoint_process(upstream.url, tmp_path / "text", CHECKPOINT_LOG_FORMAT="text") as served:
        marker = uuid.uuid4().hex
        answer = requests.get(f"{served.url}/echo/{marker}", headers={"X-Request-Id": "text-1"}, timeout=30)
        assert answer.status_code == 200 and answer.headers["X-Request-Id"] == "text-1"
        assert upstream.requests_to(marker)[0].header("X-Request-Id") == "text-1"
        (line,) = served.access_lines(f'"GET /echo/{marker} HTTP/1.1" 200 ')
        assert not line.startswith("{")
        assert re.search(r"\[\d+\] \[INFO\] Booting worker", served.log_text())


def test_registry_calls_made_for_a_request_carry_its_id(fronting, upstream):
    """The adapter's own look-ups while a governed call is inspected go out with the caller's id."""
    marker = f"model-{uuid.uuid4().hex}"
    rid = f"gov-{uuid.uuid4().hex}"
    requests.post(
        f"{fronting.url}/api/2.0/mlflow/registered-models/alias",
        headers={"X-Request-Id": rid},
        json={"name": marker, "alias": "champion", "version": "1"},
        auth=("erin", "x"),
        timeout=30,
    )
    with upstream._cond:
        lookups = [r for r in upstream.received if marker in r.target and r.method == "GET"]
    assert lookups, "the workflow looked nothing up on MLflow"
    assert {r.header("X-Request-Id") for r in lookups} == {rid}


# -- graceful stop ---------------------------------------------------------------------


class GatedUpstream(FakeUpstream):
    """``/gated/...?n=``: headers and half the body, then the rest once :attr:`gate` opens."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        super().__init__()

    def do_gated(self, request, conn) -> bool:
        self.read_body(request, conn)
        n = int(request.query["n"][0])
        data = pattern(n)
        self.answer(conn, 200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))], data[: n // 2])
        if not self.gate.wait(60):
            return False
        conn.send(data[n // 2 :])
        return True


def _unanswered(url: str) -> bool:
    """A new call gets no answer within a second: no worker accepts any more."""
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0) as sock:
            sock.sendall(b"GET /checkpoint/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(1) == b""
    except (TimeoutError, ConnectionError):
        return True


@pytest.mark.parametrize("zero_copy", ["auto", "off"], ids=["splice", "copy"])
def test_sigterm_lets_a_download_and_an_upload_in_flight_finish(tmp_path, zero_copy):
    size = 8 * 1024 * 1024 + 4321
    upstream = GatedUpstream()
    try:
        with checkpoint_process(upstream.url, tmp_path / "graceful", CHECKPOINT_ZERO_COPY=zero_copy) as served:
            directory = metrics_dir(served)
            marker = uuid.uuid4().hex
            received = {"n": 0}
            digests: dict[str, object] = {}

            def download() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", int(served.url.rsplit(":", 1)[1]), timeout=60)
                conn.request("GET", f"/gated/{marker}?n={size}")
                response = conn.getresponse()
                digest = hashlib.sha256()
                for _ in range(100_000):
                    block = response.read(65536)
                    if not block:
                        break
                    digest.update(block)
                    received["n"] += len(block)
                digests["download"] = (response.status, digest.hexdigest())
                conn.close()

            body = pattern(size, seed=11)
            client_gate = threading.Event()

            def chunks() -> Iterator[bytes]:
                for start in range(0, size, 65536):
                    if start >= size // 2:
                        client_gate.wait(60)
                    yield body[start : start + 65536]

            def upload() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", int(served.url.rsplit(":", 1)[1]), timeout=60)
                conn.request("PUT", f"/echo/up-{marker}", body=chunks(), headers={"Content-Length": str(size)})
                response = conn.getresponse()
                digests["upload"] = (response.status, json.loads(response.read()))
                conn.close()

            threads = [threading.Thread(target=download), threading.Thread(target=upload)]
            for thread in threads:
                thread.start()
            # Mid-stream both ways: a quarter through (the rest of the first half may sit in buffers).
            wait_until(lambda: received["n"] >= size // 4, "a quarter of the download", timeout=20, step=0.02)
            (up,) = upstream.wait_for(f"up-{marker}", complete=False)
            wait_until(lambda: len(up.body) >= size // 4, "a quarter of the upload", timeout=20, step=0.02)

            served.process.send_signal(signal.SIGTERM)
            wait_until(lambda: _unanswered(served.url), "the workers to stop accepting", timeout=20, step=0.02)
            stopped_accepting = time.monotonic()
            upstream.gate.set()
            client_gate.set()
            for thread in threads:
                thread.join(60)
            returncode = served.process.wait(timeout=30)
            exited_after = time.monotonic() - stopped_accepting

            assert digests["download"] == (200, sha256(pattern(size)))
            status, report = digests["upload"]
            assert status == 200
            assert (report["body_length"], report["body_sha256"]) == (size, sha256(body))
            assert returncode == 0
            # Well inside graceful_timeout (60 s): nothing was left to wait for.
            assert exited_after < 15, exited_after
            assert not directory.exists(), "the private metrics directory outlived the server"
            assert not any(line["level"] in ("ERROR", "CRITICAL") for line in json_lines(served.log_path))
    finally:
        upstream.stop()


def test_a_killed_masters_metrics_directory_goes_at_the_next_start(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"checkpoint-metrics-{_dead_pid()}-x1"
    alive = tmp_path / f"checkpoint-metrics-{os.getpid()}-x2"
    other = tmp_path / "checkpoint-metrics-notapid-x3"
    for directory in (dead, alive, other):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")
    metrics._sweep_orphans()
    assert (dead.exists(), alive.exists(), other.exists()) == (False, True, True)


def _dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait(timeout=10)
    return process.pid
