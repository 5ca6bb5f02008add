"""Prometheus metrics, served at ``GET /checkpoint/metrics`` (no login, like the health probes).

What is measured:

* ``checkpoint_requests_total{route, status}`` — every call Checkpoint answered, by route class
  (:func:`route_class`) and HTTP status;
* ``checkpoint_upstream_seconds{route}`` — time from sending a call to MLflow to its answer's
  headers (time to first byte; for an upload that includes sending the body);
* ``checkpoint_proxy_body_bytes_total{direction, path}`` — bytes of streamed bodies (those over
  one chunk) by ``upload``/``download`` and by how they moved: ``splice`` (zero-copy) or ``copy``;
* ``checkpoint_governed_calls_total{kind, outcome}`` — governed calls turned into promote
  requests (``opened``, ``existing``) or into a pointer to the form (``ui``);
* ``checkpoint_promote_requests{state}`` — requests open, approved, applying, and ``failed``
  (an apply failed and waits for a retry: the apply failures to alert on);
* ``checkpoint_webhook_backlog`` — webhook deliveries not yet sent;
* ``checkpoint_database_up`` — whether the last scrape could read the database.

The last three are read from the database at scrape time, so they agree across workers and
replicas and cost nothing per request.

**Several processes.** Under gunicorn each worker counts on its own; prometheus_client's
multi-process mode keeps the counts in memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR``
and adds them up at scrape time, whichever worker answers. `checkpoint serve` sets that up
by itself: a private directory made before the workers fork, removed when it exits (or at
the next start, if it was killed), and a dead worker's files marked in gunicorn's
``child_exit`` hook. Under a plain gunicorn, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
directory writable by the workers (emptied before each start), and add
``child_exit = checkpoint.runtime.metrics.child_exit`` to the gunicorn config.
A single process (werkzeug, tests) needs none of this.

The per-call cost is one dictionary look-up and one increment (plus one histogram
observation for a proxied call).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from checkpoint.settings import SettingsError

log = logging.getLogger("checkpoint.metrics")  # the name operators filter the JSON logs on
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
ROUTES = ("checkpoint", "ui", "api_read", "api_write", "artifacts_upload", "artifacts_download", "governed")
REQUEST_STATES = ("open", "approved", "applying", "failed")

# Not registered anywhere at import: :func:`registry` builds the one a scrape reads.
REQUESTS = Counter(
    "checkpoint_requests", "Calls Checkpoint answered, by route class and status", ["route", "status"], registry=None
)
UPSTREAM_SECONDS = Histogram(
    "checkpoint_upstream_seconds",
    "Time from sending a call to MLflow to the first byte of its answer",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=None,
)
GOVERNED = Counter(
    "checkpoint_governed_calls", "Governed calls intercepted, by change kind and outcome", ["kind", "outcome"], registry=None
)
BODY_BYTES = Counter(
    "checkpoint_proxy_body_bytes",
    "Bytes of streamed bodies, by direction and by how they moved (splice or copy)",
    ["direction", "path"],
    registry=None,
)
_OWN = (REQUESTS, UPSTREAM_SECONDS, GOVERNED, BODY_BYTES)

# Label children by label values: ``labels()`` validates and locks on every call, a dict does not.
_request_children: dict[tuple[str, str], Counter] = {}
_upstream_children: dict[str, Histogram] = {}

_API_MARKERS = ("/api/", "/ajax-api/")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# MLflow answers these POSTs without changing anything.
_POST_READS = ("/search", "/get-latest-versions")


def route_class(method: str, path: str) -> str:
    """Which kind of MLflow traffic a call is (Checkpoint's own paths are ``checkpoint``)."""
    if path.startswith("/checkpoint/") or path == "/checkpoint":
        return "checkpoint"
    if "/mlflow-artifacts/" in path:
        if method in ("GET", "HEAD"):
            return "artifacts_download"
        return "artifacts_upload" if method in ("PUT", "POST") else "api_write"
    if any(marker in path for marker in _API_MARKERS) or path.startswith("/graphql"):
        if method in _READ_METHODS or (method == "POST" and path.endswith(_POST_READS)):
            return "api_read"
        return "api_write"
    return "ui"


def count_request(route: str, status: str) -> None:
    """Count one answer; ``status`` is the WSGI status line (``"200 OK"``)."""
    key = (route, status[:3])
    child = _request_children.get(key)
    if child is None:
        child = _request_children[key] = REQUESTS.labels(route, key[1])
    child.inc()


def count_body(direction: str, path: str, moved: int) -> None:
    """The proxy's hook after each streamed body (once per body, not per chunk)."""
    BODY_BYTES.labels(direction, path).inc(moved)


def observe_upstream(environ: dict, seconds: float) -> None:
    """The proxy's hook: MLflow's time to first byte for this call."""
    route = environ.get("checkpoint.route", "ui")
    child = _upstream_children.get(route)
    if child is None:
        child = _upstream_children[route] = UPSTREAM_SECONDS.labels(route)
    child.observe(seconds)


def count_governed(kind: str, outcome: str) -> None:
    GOVERNED.labels(kind, outcome).inc()


# -- several processes -----------------------------------------------------------------


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess() -> str | None:
    """In gunicorn's master, before it forks: a private metrics directory, unless one is set.

    Returns the directory made here (the caller removes it on exit), or None when the
    operator gave ``PROMETHEUS_MULTIPROC_DIR`` (theirs to manage).
    """
    made = None
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        _sweep_orphans()
        made = path = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
        os.environ[MULTIPROC_ENV] = path
    elif not os.path.isdir(path):
        raise SettingsError(f"{MULTIPROC_ENV}={path!r} is not a directory; create it (empty) or unset it")
    # prometheus_client picks its value class when first imported, maybe before the variable was
    # set; nothing has been counted yet in this process, so no value of the old class exists.
    values.ValueClass = values.get_value_class()
    log.info("metrics: multi-process directory %s", path)
    return made


_PREFIX = "checkpoint-metrics-"


def _sweep_orphans() -> None:
    """Remove the directories of earlier masters that died without cleaning up (``kill -9``)."""
    for entry in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = entry.name[len(_PREFIX) :].split("-", 1)[0]
        try:
            if not pid.isdigit() or entry.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:  # alive under another user, or gone meanwhile
            continue


def child_exit(server, worker) -> None:
    """gunicorn hook: a dead worker's live gauges no longer count (its counters still do)."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(worker.pid)


# -- scraping --------------------------------------------------------------------------


class _StoreCollector:
    """Gauges read from the database at scrape time."""

    def __init__(self, store) -> None:
        self.store = store

    def describe(self) -> Iterator:
        return iter(())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("checkpoint_database_up", "1 when this scrape could read Checkpoint's database")
        try:
            counts = {state: self.store.count(state=state) for state in REQUEST_STATES}
            backlog_of = getattr(self.store, "delivery_backlog", None)
            backlog = backlog_of() if callable(backlog_of) else 0
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the database does not
            log.warning("metrics: database unreadable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        requests = GaugeMetricFamily(
            "checkpoint_promote_requests", "Promote requests by state (failed: apply failed)", labels=["state"]
        )
        for state, number in counts.items():
            requests.add_metric([state], number)
        yield requests
        yield GaugeMetricFamily("checkpoint_webhook_backlog", "Webhook deliveries waiting to be sent", value=backlog)


def registry(store) -> CollectorRegistry:
    """What a scrape reads: every worker's counts (or this process's), plus the store's gauges."""
    built = CollectorRegistry()
    if multiprocess_mode():
        multiprocess.MultiProcessCollector(built)
    else:
        for metric in _OWN:
            built.register(metric)
    built.register(_StoreCollector(store))
    return built


def exposition(built: CollectorRegistry) -> bytes:
    return generate_latest(built)
