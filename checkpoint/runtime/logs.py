"""Logs a machine can read: one JSON object per line, each carrying the request's id.

``CHECKPOINT_LOG_FORMAT=json`` (the default) writes every line — Checkpoint's own, gunicorn's,
and the access log — as one JSON object with ``timestamp``, ``level``, ``logger``, ``message``
and ``request_id``; an access line adds ``method``, ``path``, ``status``, ``duration_ms``,
``bytes`` and ``user``. ``text`` keeps the classic one-line format for people at a terminal.

Every call gets a request id: the caller's ``X-Request-Id`` when it is a sane token, else a
new one. It goes to MLflow on the proxied call and on the registry adapter's own calls made
while handling it, back to the caller in the answer, and into every log line, so one grep
follows a call across Checkpoint and MLflow.

The access line is written by :class:`GunicornLogger` after the answer went out, from what
gunicorn already measured (status, bytes sent, duration): the proxy path pays for nothing
but one dictionary and one ``json.dumps``, and only when an access log is configured.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import threading
import time

from gunicorn import glogging

from checkpoint.settings import gunicorn_log_format

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HEADER = "X-Request-Id"
ENVIRON_KEY = "checkpoint.request_id"
USER_KEY = "checkpoint.user"  # set where Checkpoint resolved the caller, read by the access line

# The id of the call this thread is serving (gunicorn serves one call per thread at a time).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_SANE = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Fields an access line carries besides the standard ones.
_ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "bytes", "user", "remote_addr")


def request_id(incoming: str | None) -> str:
    """The caller's id when it is a short token of safe characters, else a fresh one.

    Anything else (too long, spaces, quotes, newlines) could forge or break log lines
    downstream, so it is replaced rather than cleaned up. A new id is 32 hex digits.
    """
    if incoming and _SANE.fullmatch(incoming):
        return incoming
    return _fresh_id()


class _RandomIds:
    """Fresh ids from the kernel's random source, read 256 ids at a time.

    ``os.urandom`` releases the GIL around its system call, and under gunicorn's threads every
    release is a hand-over to another thread: one per call cost more than the bytes. The ids are
    exactly as random; a forked worker starts from its own bytes, never the parent's leftovers.
    """

    SIZE = 16 * 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._bytes, self._at = b"", 0

    def __call__(self) -> str:
        with self._lock:
            if self._at >= len(self._bytes):
                self._bytes, self._at = os.urandom(self.SIZE), 0
            source, at = self._bytes, self._at
            self._at = at + 16
        return source[at : at + 16].hex()


_fresh_id = _RandomIds()


def current_request_id() -> str | None:
    return REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per record; never raises on odd arguments."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        out: dict = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        for name in _ACCESS_FIELDS:
            if name in record.__dict__:
                out[name] = record.__dict__[name]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str, level: str) -> None:
    """Send Checkpoint's own records to standard error in ``log_format``.

    Like ``logging.basicConfig``, it leaves alone a process whose logging someone else has
    already set up (a host application, pytest's capture), and calling it again (one app per
    test) replaces its own handler instead of adding a second one.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_checkpoint", False)]
    if not ours and root.handlers:
        return
    handler = ours[0] if ours else logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    if not ours:
        handler._checkpoint = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


class GunicornLogger(glogging.Logger):
    """gunicorn's logger with JSON lines (``CHECKPOINT_LOG_FORMAT=json``) and a lean access line.

    `checkpoint serve` installs it (gunicorn's ``logger_class``) with its settings' format
    (:meth:`with_format`); a plain gunicorn gets it with ``--logger-class
    checkpoint.runtime.logs.GunicornLogger``, and the format from the environment, through
    settings.py, because gunicorn builds its logger before any app exists.
    """

    # Set by :meth:`with_format`; None: ``CHECKPOINT_LOG_FORMAT``, read by settings.py.
    configured_format: str | None = None

    @classmethod
    def with_format(cls, log_format: str) -> type[GunicornLogger]:
        """This logger class, writing ``log_format`` whatever the environment says."""
        return type(cls.__name__, (cls,), {"configured_format": log_format, "__module__": cls.__module__})

    def setup(self, cfg) -> None:
        super().setup(cfg)
        self.log_format = self.configured_format or gunicorn_log_format()
        if self.log_format == "json":
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    if getattr(handler, "_gunicorn", False):
                        handler.setFormatter(JsonFormatter())

    def access(self, resp, req, environ, request_time) -> None:
        if self.log_format != "json":
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return None
        status = resp.status
        try:
            code = int(status.split(None, 1)[0] if isinstance(status, str) else status)
        except (TypeError, ValueError):
            code = None
        method = environ.get("REQUEST_METHOD")
        path = environ.get("RAW_URI") or environ.get("PATH_INFO")
        fields = {
            "request_id": environ.get(ENVIRON_KEY),
            "method": method,
            "path": path,
            "status": code,
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "bytes": getattr(resp, "sent", None),
            "user": environ.get(USER_KEY) or self._get_user(environ),
            "remote_addr": environ.get("REMOTE_ADDR"),
        }
        try:
            self.access_log.info("%s %s %s", method, path, code, extra=fields)
        except Exception:  # noqa: BLE001 - a log line must never fail a request
            self.exception("access log line failed")
        return None
