"""`checkpoint serve`: gunicorn configured for a streaming proxy, the caller's migration run first.

Measured choice (see README, Performance): the ``gthread`` worker. Each in-flight call
holds one thread while it streams, idle keep-alive connections wait in the worker's
poller without holding one, and no monkey-patching is needed for urllib3 or SQLAlchemy.
`checkpoint serve` runs it as :class:`ProxyWorker`, which lets a busy keep-alive
connection keep its thread (see there); gunicorn started with ``-k gthread`` works too.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import select
import shutil
import threading
from collections.abc import Callable, Iterable

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.serving import WSGIRequestHandler

from checkpoint import identity
from checkpoint.edge import limits
from checkpoint.edge.splice import RESPONSE_KEY
from checkpoint.edge.wire import one_write
from checkpoint.runtime import logs, metrics
from checkpoint.settings import Settings


def default_options(
    host: str, port: int, workers: int | None = None, threads: int | None = None, settings: Settings | None = None
) -> dict:
    """The gunicorn settings `checkpoint serve` uses; the Dockerfile runs exactly these.

    ``settings`` gives the access log, log level and trusted proxies (without: their defaults)."""
    return {
        "bind": f"{host}:{port}",
        "worker_class": "checkpoint.edge.serving.ProxyWorker",
        "workers": workers or min(4, multiprocessing.cpu_count()),
        "threads": threads or 32,
        # A client that pauses longer reconnects, which costs one TCP handshake. (On SIGTERM idle
        # keep-alive connections are closed at once: see ProxyWorker.wait_for_and_dispatch_events.)
        "keepalive": 5,
        # gthread's heartbeat comes from the main loop, so a long stream does not trip it.
        "timeout": 120,
        # Streams in flight get this long to finish on SIGTERM.
        "graceful_timeout": 60,
        "accesslog": settings.access_log if settings else None,
        # JSON lines (CHECKPOINT_LOG_FORMAT) and a lean access line: see logs.py.
        "logger_class": "checkpoint.runtime.logs.GunicornLogger",
        # A dead worker's live gauges stop counting in the metrics' multi-process mode.
        "child_exit": metrics.child_exit,
        "errorlog": "-",
        "loglevel": (settings.log_level if settings else "info").lower(),
        "proc_name": "checkpoint",
        # gunicorn 26's control socket is one path per user: two servers on a host would share it.
        "control_socket_disable": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips if settings else "127.0.0.1,::1",
    }


# How long a thread that has just answered waits for the same client's next request.
LINGER_SECONDS = 0.005


class ProxyWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker, except that a busy keep-alive connection keeps its thread.

    Stock gthread hands every keep-alive connection back to the main thread's poller after
    each answer, and to a pool thread again when the next request arrives: a pipe write,
    two selector changes and two thread wake-ups per request. Profiled (py-spy, GIL
    samples) under sequential calls, that bookkeeping held the GIL as long as the proxying
    itself. Here the thread that answered waits up to ``LINGER_SECONDS`` for the client's
    next request and serves it at once: 10-15 % less CPU per proxied call, measured with
    benchmarks/. A connection that stays quiet goes back to the poller exactly as before,
    so idle keep-alive connections still hold no thread, and a thread lingers only while
    another one of the pool is free, so no queued connection waits on it. Written against
    gunicorn 26's gthread, whose ``handle`` serves one request of an initialised connection.

    It also takes every request head MLflow's own servers take, and refuses a larger one in
    MLflow's JSON error shape instead of gunicorn's HTML page (``limits.py``).
    """

    wsgi: Callable[[dict, Callable], Iterable[bytes]]  # gunicorn's Worker.load_wsgi sets it

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._threads = self.cfg.threads
        self._in_use = 0
        self._in_use_lock = threading.Lock()
        self._current = threading.local()  # the request each pool thread is serving
        self._limits = limits.HeadLimits()

    def handle_error(self, req, client, addr, exc) -> None:
        answer = self._limits.refusal(exc)
        if answer is None:
            return super().handle_error(req, client, addr, exc)
        # gunicorn's own warning line for a refused request, then the JSON answer instead of its page.
        self.log.warning("Invalid request from ip={ip}: {error}".format(ip=(addr or ("",))[0], error=exc))
        try:
            util.write_nonblock(client, answer)
        except OSError:
            self.log.debug("Failed to send error message.")

    def load_wsgi(self) -> None:
        """The app, told which headers the request repeated (gunicorn's environ joins them),
        its start-up work done before this worker serves (see :func:`start_at_boot`). The request
        head limits are the app's settings' (``limits.py``), installed here, in the worker process,
        before it parses any request."""
        super().load_wsgi()
        app, current = self.wsgi, self._current
        self._limits = limits.HeadLimits.of(_settings_of(app))
        self._limits.install(self.cfg)
        start_at_boot(app)

        def marked(environ, start_response):
            environ[identity.REPEATED_KEY] = getattr(current, "repeated", frozenset())
            environ[RESPONSE_KEY] = getattr(start_response, "__self__", None)  # for a spliced answer (splice.py)
            one_write(start_response)  # a small answer's head and body in one send (wire.py)
            return app(environ, start_response)

        self.wsgi = marked

    def handle_request(self, req, conn):
        self._current.repeated = repeated_keys(name for name, _ in req.headers)
        try:
            return super().handle_request(req, conn)
        finally:
            self._current.repeated = frozenset()

    def handle(self, conn):
        with self._in_use_lock:
            self._in_use += 1
        try:
            result = super().handle(conn)
            # ``True`` is gthread's "keep the connection alive"; anything else (a close, a
            # deferral, an older gunicorn's tuple) goes back to gthread untouched.
            # A pipelined request already read off the socket is served here: the poller, which
            # only watches the socket, would never see it.
            while result is True and self.alive and (_buffered(conn) or (self._in_use < self._threads and _readable(conn.sock))):
                result = super().handle(conn)
            return result
        finally:
            with self._in_use_lock:
                self._in_use -= 1

    def wait_for_and_dispatch_events(self, timeout):
        """On SIGTERM, close the connections that hold no request instead of waiting on them.

        gthread's graceful stop waits for every open connection, idle keep-alive ones too, in
        a poll whose timeout is the whole ``graceful_timeout``: a client that merely kept its
        connection open held the worker for 60 s (measured). Calls in flight, streams
        included, still run to the end; a request that already arrived is served first.
        """
        if self.alive:
            return super().wait_for_and_dispatch_events(timeout)
        super().wait_for_and_dispatch_events(0)
        for idle in (self.keepalived_conns, self.pending_conns):
            while idle:
                conn = idle.popleft()
                try:
                    self.poller.unregister(conn.sock)
                except (OSError, KeyError, ValueError):
                    pass
                self.nr_conns -= 1
                conn.close()
        return super().wait_for_and_dispatch_events(min(timeout, 1.0))


def start_at_boot(app) -> None:
    """A worker's start-up work, before it serves: compile the page templates, settle the
    applies a crash interrupted and start the background thread (what every worker did at boot
    when ``create_app`` still did it; ``create_app`` contacts nothing, and under a server without
    this worker the app's first call starts the same work, see ``checkpoint/app.py``), then
    freeze what was built out of the garbage collector's sight."""
    from checkpoint.app import compile_templates  # lazily, as Services below
    from checkpoint.services import Services  # lazily: the front door does not depend on the wiring

    try:
        services = Services.of(app)
    except LookupError:  # another WSGI app run with this worker
        return
    compile_templates(app)
    services.start(settle_first=True)
    # What the worker built to serve lives as long as it does: out of the collector's sight, a
    # full collection no longer walks it, and one that fell inside a request page's rendering
    # of 4,000 diff rows cost that view ~150 ms (measured).
    gc.collect()
    gc.freeze()


def _settings_of(app) -> Settings | None:
    from checkpoint.services import Services  # lazily, as in start_at_boot

    try:
        return Services.of(app).settings
    except LookupError:  # another WSGI app run with this worker
        return None


def repeated_keys(names: Iterable[str]) -> frozenset[str]:
    """The WSGI keys (``HTTP_X_FORWARDED_GROUPS``) of header names seen more than once."""
    seen: set[str] = set()
    repeated: set[str] = set()
    for name in names:  # a plain loop: a Counter per request cost several times more
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in seen:
            repeated.add(key)
        seen.add(key)
    return frozenset(repeated) if repeated else _NONE_REPEATED


_NONE_REPEATED: frozenset[str] = frozenset()


class RequestHandler(WSGIRequestHandler):
    """werkzeug's development server (tests, ``checkpoint_in_thread``) with the same repeated-header
    mark as :class:`ProxyWorker`: werkzeug too joins a repeated header with ","."""

    def make_environ(self):
        environ = super().make_environ()
        environ[identity.REPEATED_KEY] = repeated_keys(self.headers.keys())
        return environ


def _readable(sock) -> bool:
    """Whether the client sends its next request within LINGER_SECONDS (poll: any fd number)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(LINGER_SECONDS * 1000))


def _buffered(conn) -> bool:
    """Whether gunicorn's parser already holds bytes of the next request (a pipelining client)."""
    unreader = getattr(conn.parser, "unreader", None)
    buf = getattr(unreader, "buf", None)
    return buf is not None and buf.seek(0, os.SEEK_END) > 0


class CheckpointServer(BaseApplication):
    """gunicorn driven from code, so its settings live next to the rest of ours."""

    def __init__(self, settings: Settings, options: dict) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self):
        from checkpoint import create_app

        return create_app(self.settings)


def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int | None = None,
    threads: int | None = None,
    *,
    migrate: Callable[[Settings], None],
) -> None:
    """Migrate once in the master, then fork the workers.

    ``migrate`` (``cli.py``: alembic to head) runs once the configuration is read and checked and
    the logs are set up, before the fork: the front door itself has no SQL (docs/architecture.md).
    """
    settings = settings.with_secret().with_audit_key()  # generated (if at all) once, before the fork
    logs.configure(settings.log_format, settings.log_level)
    # Read once, here: a bad key fails in the master, named, and the workers inherit the sections.
    settings = settings.with_policy()
    identity.check_bind(identity.from_settings(settings), host, settings.allow_unauthenticated)
    migrate(settings)
    master = os.getpid()
    made = metrics.prepare_multiprocess()  # before the fork, so every worker counts in one directory
    try:
        options = default_options(host, port, workers, threads, settings)
        options["logger_class"] = logs.GunicornLogger.with_format(settings.log_format)  # built before any app
        CheckpointServer(settings, options).run()
    finally:
        if made and os.getpid() == master:  # workers leave through here too, on their way out
            shutil.rmtree(made, ignore_errors=True)
