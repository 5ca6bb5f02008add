"""One way to serve an app in a test: werkzeug in a thread on a free loopback port, stopped (and
the app closed) on the way out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from werkzeug.serving import BaseWSGIServer, make_server

from checkpoint.demo.mlflow_server import free_port
from checkpoint.edge.serving import RequestHandler
from checkpoint.services import services

__all__ = ["close_app", "serve_in_thread", "served"]


def close_app(application) -> None:
    """Stop an in-process app's background thread, close its connections (Services.close)."""
    services(application).close()


def serve_in_thread(application, port: int | None = None) -> tuple[BaseWSGIServer, threading.Thread]:
    """A threaded werkzeug server for ``application`` (marking repeated headers as gunicorn's
    worker does), on ``port`` or a free one; callers shut it down. Prefer :func:`served`."""
    server = make_server("127.0.0.1", port or free_port(), application, threaded=True, request_handler=RequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="checkpoint-werkzeug", daemon=True)
    thread.start()
    return server, thread


@contextmanager
def served(application, *, close: bool = True) -> Iterator[str]:
    """``application`` answering real HTTP while the block runs; yields its base URL. On the way
    out the server stops and, unless ``close`` is false, so does the app (:func:`close_app`)."""
    server, thread = serve_in_thread(application)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        if close:
            close_app(application)
