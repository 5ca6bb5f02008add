"""The registry adapter's answer handling. A real MLflow never answers 200 without the fields its API
carries, so a small loopback server plays whatever stands in its place (a misrouted proxy, another app)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from checkpoint.registry import MalformedAnswer, Registry, RegistryUnavailable


class _Answers(BaseHTTPRequestHandler):
    bodies: dict[str, dict] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.bodies.get(self.path.split("?", 1)[0], {})).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Registry(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def test_an_answer_without_its_object_is_a_bad_gateway_not_a_crash(registry):
    _Answers.bodies = {}
    with pytest.raises(MalformedAnswer) as raised:
        registry.model("churn")
    assert isinstance(raised.value, RegistryUnavailable)  # the gateway's 502, never a 500
    assert isinstance(raised.value, KeyError)  # and still what code expecting a missing field catches
    assert raised.value.status == 502
    assert str(raised.value) == (
        "BAD_RESPONSE: MLflow's answer to /api/2.0/mlflow/registered-models/get has no 'registered_model'"
    )


def test_a_whole_answer_reads_as_before(registry):
    _Answers.bodies = {
        "/api/2.0/mlflow/registered-models/get": {
            "registered_model": {"name": "churn", "aliases": [{"alias": "champion", "version": "3"}]}
        }
    }
    model = registry.model("churn")
    assert (model.name, model.aliases) == ("churn", {"champion": "3"})
