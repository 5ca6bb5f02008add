"""When MLflow is down, slow, or breaks off: clear errors, never a silently short answer.

Upstream failures are played by a raw-socket fake upstream (see ``proxy_helpers``) and
by a port nothing listens on; Checkpoint runs for real under werkzeug and gunicorn.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from checkpoint.demo.mlflow_server import free_port
from tests.support.proxy import (
    SERVERS,
    checkpoint_in_thread,
    checkpoint_process,
    pattern,
    server_env,
    sha256,
)

READ_TIMEOUT = 1.0
# Far above any correct answer on loopback; a hang shows up as a timeout error instead.
CLIENT_TIMEOUT = 8
BROKEN = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)


def _serve(kind: str, registry_url: str, module_db: str, data_dir) -> Iterator[str]:
    if kind == "werkzeug":
        with checkpoint_in_thread(registry_url, data_dir, database_url=module_db, upstream_read_timeout=READ_TIMEOUT) as url:
            yield url
    else:
        env = {"CHECKPOINT_UPSTREAM_READ_TIMEOUT": str(READ_TIMEOUT), **server_env(kind)}
        with checkpoint_process(registry_url, data_dir, **env) as served:
            yield served.url


@pytest.fixture(scope="module", params=SERVERS)
def checkpoint(request, upstream, module_db, tmp_path_factory) -> Iterator[str]:
    """Checkpoint in front of the fake upstream, with a read timeout of one second."""
    yield from _serve(request.param, upstream.url, module_db, tmp_path_factory.mktemp(f"fail-{request.param}"))


@pytest.fixture(scope="module")
def dead_url() -> str:
    """An upstream address nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module", params=["werkzeug", "gunicorn"])
def down(request, dead_url, module_db, tmp_path_factory) -> Iterator[str]:
    """Checkpoint in front of an MLflow that is not running."""
    yield from _serve(request.param, dead_url, module_db, tmp_path_factory.mktemp(f"down-{request.param}"))


def marker() -> str:
    return uuid.uuid4().hex


def assert_fine(url: str) -> None:
    """Checkpoint still proxies a call (and an upload) normally."""
    m = marker()
    data = pattern(1024 * 1024 + 1, seed=5)
    answer = requests.put(f"{url}/echo/{m}", data=data, timeout=CLIENT_TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["body_sha256"] == sha256(data)
    assert requests.get(f"{url}/echo/{m}-get", timeout=CLIENT_TIMEOUT).status_code == 200


def outcome(method: str, url: str, **kwargs) -> int | str:
    """The status code, or "broken" when the client saw a cut-off answer or connection."""
    try:
        return requests.request(method, url, timeout=CLIENT_TIMEOUT, **kwargs).status_code
    except BROKEN:
        return "broken"


# -- MLflow not running -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "accept"),
    [
        ("GET", "/api/2.0/mlflow/experiments/search?max_results=1", None, "application/json"),
        ("POST", "/api/2.0/mlflow/experiments/create", b'{"name": "x"}', "application/json"),
        ("DELETE", "/ajax-api/2.0/mlflow/registered-models/alias", b'{"name": "m", "alias": "a"}', "*/*"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/f.bin", b"x" * 70_000, "*/*"),
        ("GET", "/api/2.0/mlflow/registered-models/search", None, "text/html,application/xhtml+xml"),
        ("POST", "/graphql", b'{"query": "{ test }"}', "text/html"),
    ],
)
def test_upstream_down_answers_json_502_naming_it(down, dead_url, method, path, body, accept):
    started = time.monotonic()
    answer = requests.request(
        method, f"{down}{path}", data=body, headers={"Accept": accept, "Content-Type": "application/json"}, timeout=CLIENT_TIMEOUT
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 502
    assert answer.headers["Content-Type"] == "application/json"
    payload = answer.json()
    assert set(payload) == {"error_code", "message"}
    assert payload["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert dead_url in payload["message"]
    assert elapsed < 3, f"a refused connection took {elapsed:.1f} s to report"


def test_upstream_down_browser_gets_a_page(down, dead_url):
    answer = requests.get(f"{down}/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, timeout=CLIENT_TIMEOUT)
    assert answer.status_code == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "<html" in answer.text
    assert dead_url in answer.text


def test_upstream_down_large_upload_then_keeps_answering(down, dead_url):
    result = outcome("PUT", f"{down}/api/2.0/mlflow-artifacts/artifacts/0/r/artifacts/big.bin", data=pattern(8 * 1024 * 1024))
    assert result in (502, "broken")
    answer = requests.get(f"{down}/api/2.0/mlflow/experiments/search", timeout=CLIENT_TIMEOUT)
    assert answer.status_code == 502
    assert dead_url in answer.json()["message"]


CLIENT_CALLS = {
    "search_experiments": lambda client: client.search_experiments(),
    "create_experiment": lambda client: client.create_experiment(f"down-{marker()}"),
}


@pytest.mark.parametrize("call", list(CLIENT_CALLS))
def test_mlflow_client_error_names_the_upstream(down, dead_url, monkeypatch, call):
    """MLflow down behind Checkpoint: a standard 502, which the client retries (riding out an
    MLflow restart) and then reports as such. The client drops the body of a retried status,
    so the address is checked on the raw answer the client got."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(CLIENT_TIMEOUT))
    client = MlflowClient(tracking_uri=down)
    started = time.monotonic()
    with pytest.raises(MlflowException) as caught:
        CLIENT_CALLS[call](client)
    assert "502" in str(caught.value)
    assert time.monotonic() - started < 15
    raw = requests.get(f"{down}/api/2.0/mlflow/experiments/search?max_results=1", timeout=CLIENT_TIMEOUT)
    assert raw.status_code == 502
    assert dead_url in raw.json()["message"]


# -- MLflow slow ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "most_attempts"), [("GET", 2), ("POST", 1), ("DELETE", 1)])
def test_slow_upstream_is_a_504(checkpoint, upstream, method, most_attempts):
    m = marker()
    body = b'{"name": "m"}' if method != "GET" else None
    started = time.monotonic()
    answer = requests.request(
        method, f"{checkpoint}/slow/{m}", data=body, headers={"Content-Type": "application/json"}, timeout=CLIENT_TIMEOUT
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 504
    payload = answer.json()
    assert payload["error_code"] == "DEADLINE_EXCEEDED"
    assert upstream.url in payload["message"]
    assert READ_TIMEOUT <= elapsed < most_attempts * READ_TIMEOUT + 3
    # The request sat in the upstream's socket while Checkpoint waited; the fake upstream's own
    # threads may record it after the 504 on a loaded machine, so wait for it to be seen.
    upstream.wait_for(m, complete=False)
    assert 1 <= len(upstream.requests_to(m)) <= most_attempts
    assert_fine(checkpoint)


# -- MLflow breaking off ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1000, 502), (2 * 1024 * 1024, "broken")],
    ids=["buffered", "streamed"],
)
def test_download_cut_off_is_never_a_short_200(checkpoint, upstream, n, expected):
    started = time.monotonic()
    assert outcome("GET", f"{checkpoint}/truncate/{marker()}?n={n}") == expected
    assert time.monotonic() - started < 10
    assert_fine(checkpoint)


def test_chunked_download_cut_off_is_an_error(checkpoint, upstream):
    started = time.monotonic()
    assert outcome("GET", f"{checkpoint}/truncate-chunked/{marker()}") == "broken"
    assert time.monotonic() - started < 10
    assert_fine(checkpoint)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upstream_reset_mid_upload(checkpoint, upstream, chunked):
    m = marker()
    data = pattern(16 * 1024 * 1024, seed=9)
    body = (data[i : i + 256 * 1024] for i in range(0, len(data), 256 * 1024)) if chunked else data
    result = outcome("PUT", f"{checkpoint}/abort-upload/{m}", data=body)
    assert result in (502, "broken")
    (seen,) = upstream.wait_for(m, complete=False)
    assert 0 < len(seen.body) < len(data)
    assert_fine(checkpoint)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_write_is_not_retried_when_upstream_drops_it(checkpoint, upstream, method):
    m = marker()
    answer = requests.request(method, f"{checkpoint}/drop/{m}", json={"name": "m", "version": "1"}, timeout=CLIENT_TIMEOUT)
    assert answer.status_code == 502
    assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    # The proxy answers only once it has given up, so every attempt it made is in by now.
    assert len(upstream.requests_to(m)) == 1
    assert_fine(checkpoint)


def test_bodiless_read_is_retried_at_most_once_when_dropped(checkpoint, upstream):
    m = marker()
    answer = requests.get(f"{checkpoint}/drop/{m}", timeout=CLIENT_TIMEOUT)
    assert answer.status_code == 502
    assert 1 <= len(upstream.requests_to(m)) <= 2
