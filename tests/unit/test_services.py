"""Building an app wires the services and contacts nothing but its database; serving it (or
``Services.start``) runs the start-up work; ``Services.close`` ends it all.

The "registry" is a listening loopback socket nobody answers on: the kernel completes any
connection attempt into its backlog, so whether one was made is read without a thread. A
request is left in ``applying`` with a lease that has run out, so a start-up reconcile would
have to ask MLflow about it: building the app must not, starting it must.
"""

from __future__ import annotations

import gc
import select
import socket
from collections.abc import Iterator

import pytest

from checkpoint import create_app
from checkpoint.edge.serving import start_at_boot
from checkpoint.review.reconcile import Reconciler
from checkpoint.services import Services, services
from checkpoint.storage import db
from checkpoint.storage.entities import APPLYING, OPEN
from tests.support.stored import open_delete_alias


@pytest.fixture
def registry() -> Iterator[socket.socket]:
    """A loopback port that accepts connections into its backlog and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def attempted(registry: socket.socket, wait: float = 0.0) -> bool:
    """Whether anything connected to the registry (within ``wait`` seconds)."""
    readable, _, _ = select.select([registry], [], [], wait)
    return bool(readable)


@pytest.fixture
def config(registry, tmp_path) -> dict:
    url = f"sqlite:///{tmp_path / 'checkpoint.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    host, port = registry.getsockname()
    return {
        "registry_url": f"http://{host}:{port}",
        "database_url": url,
        "data_dir": tmp_path,
        "upstream_read_timeout": 1.0,
        "apply_lease": 0.001,
    }


def leave_applying(app) -> int:
    """A request a worker claimed and died on: the reconciler must ask MLflow about it."""
    store = services(app).store
    item = open_delete_alias(store)
    assert store.transition(item.id, (OPEN,), APPLYING, actor="bob", event="applying")
    return item.id


def test_building_an_app_contacts_no_registry(registry, config):
    app = create_app(config)
    try:
        wired = services(app)
        leave_applying(app)
        second = create_app(config)  # a second build finds the stuck request and still asks nobody
        services(second).close()
        assert not attempted(registry)
        assert not wired.started
        assert wired.background._thread is None
        assert isinstance(wired.reconciler, Reconciler) and wired.reconciler.store is wired.store
        assert wired.workflow.registry is wired.registry and wired.workflow.store is wired.store
    finally:
        services(app).close()


def test_the_first_call_starts_the_background_thread_which_reconciles(registry, config):
    app = create_app(config)
    try:
        request_id = leave_applying(app)
        assert app.test_client().get("/checkpoint/healthz").status_code == 200
        wired = services(app)
        assert wired.started
        assert wired.background._thread is not None and wired.background._thread.is_alive()
        assert attempted(registry, wait=30), "the thread's first round did not ask MLflow about the stuck request"
        assert wired.store.get(request_id).state == APPLYING  # MLflow never answered: left for the next round
    finally:
        services(app).close()


def test_start_settles_first_when_asked_and_close_ends_everything(registry, config):
    app = create_app({**config, "background": False})
    wired = services(app)
    leave_applying(app)
    wired.start(settle_first=True)  # as `checkpoint serve` does in each worker at boot
    assert attempted(registry)  # settled (tried) before start returned, in this thread
    assert wired.background._thread is None  # CHECKPOINT_BACKGROUND=false: no thread
    wired.close()
    wired.close()  # idempotent
    wired.start()
    assert wired.background._thread is None  # a closed process starts nothing again


def test_a_worker_settles_at_boot_before_it_serves(registry, config):
    """`checkpoint serve`'s worker (ProxyWorker.load_wsgi) runs the start-up work itself."""
    app = create_app({**config, "background": False})
    try:
        leave_applying(app)
        assert "ui/detail.html" not in {name for _, name in app.jinja_env.cache.keys()}
        assert gc.get_freeze_count() == 0
        start_at_boot(app)
        assert services(app).started
        assert "ui/detail.html" in {name for _, name in app.jinja_env.cache.keys()}  # compiled before serving
        assert gc.get_freeze_count() > 0  # what boot built is out of the collector's sight
        assert attempted(registry)
    finally:
        gc.unfreeze()  # this test process goes on: its objects back under the collector
        services(app).close()
    start_at_boot(lambda environ, start_response: [])  # another WSGI app: nothing to start


def test_of_refuses_an_app_it_did_not_build():
    class Bare:
        extensions: dict = {}

    with pytest.raises(LookupError, match="not built by checkpoint.create_app"):
        Services.of(Bare())
