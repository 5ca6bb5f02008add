"""A webhook receiver on loopback for the tests: it verifies each delivery with the signature check of
scripts/webhook_receiver.py (loaded from the file, as operators run it) and answers what a test
scripts (statuses, refusals, a delay), keeping every arrival to be read back."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from checkpoint.demo.mlflow_server import free_port
from tests.support.apps import ROOT

__all__ = ["SECRET", "SECRET_ENV", "Arrival", "Receiver", "hook", "receiver_script", "write_policy"]

SECRET = "test-webhook-secret"
SECRET_ENV = "CHECKPOINT_TEST_WEBHOOK_SECRET"


def _load_receiver_script():
    spec = importlib.util.spec_from_file_location("webhook_receiver", ROOT / "scripts" / "webhook_receiver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


receiver_script = _load_receiver_script()


@dataclass
class Arrival:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    refusal: tuple[int, str] | None

    @property
    def delivery_id(self) -> str:
        return self.headers["X-MLflow-Delivery-Id"]

    @property
    def message(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on loopback that verifies every POST with the receiver script's ``verify``
    and answers what ``script`` says (a list of statuses, then 200), after ``delay`` seconds."""

    port: int = field(default_factory=free_port)
    script: list[int] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)  # model name → how many of its first POSTs get a 500
    delay: float = 0.0
    arrivals: list[Arrival] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k: v for k, v in self.headers.items()}
                refusal = receiver_script.verify(SECRET, self.headers, body)
                model = json.loads(body).get("data", {}).get("model") if body.startswith(b"{") else None
                with receiver.lock:
                    status = receiver.script.pop(0) if receiver.script else 200
                    if receiver.refuse.get(model):
                        receiver.refuse[model] -= 1
                        status = 500
                if refusal:
                    status = refusal[0]
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.arrivals.append(Arrival(time.monotonic(), self.path, headers, body, status, refusal))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def accepted(self, path: str | None = None) -> list[Arrival]:
        with self.lock:
            return [a for a in self.arrivals if a.answered == 200 and (path is None or a.path == path)]

    def all(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)


def hook(receiver: Receiver, name: str = "team", path: str = "/hook", **extra) -> dict:
    return {
        "name": name,
        "url": f"{receiver.url}{path}",
        "events": ["*"],
        "secret_env": SECRET_ENV,
        "backoff": 0.05,
        "max_backoff": 0.5,
        **extra,
    }


def write_policy(directory: Path, webhooks: list[dict]) -> Path:
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump({"webhooks": webhooks}))
    return path
