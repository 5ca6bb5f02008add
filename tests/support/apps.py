"""A Checkpoint answering real HTTP in this process, so tests can also look inside it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.databases import drop_database, migrated_database
from tests.support.serving import close_app, serve_in_thread, served

__all__ = [
    "ROOT",
    "LiveCheckpoint",
    "background_task",
    "close_app",
    "drop_database",
    "live",
    "migrated_database",
    "serve_in_thread",
    "served",
]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LiveCheckpoint:
    """Checkpoint answering real HTTP on a free loopback port."""

    url: str
    app: object
    database_url: str


@contextmanager
def live(application, database_url: str) -> Iterator[LiveCheckpoint]:
    """``application`` served while the block runs (then stopped and closed)."""
    with served(application) as url:
        yield LiveCheckpoint(url, application, database_url)


def background_task(application, name: str):
    """The ``run`` of the background task ``name`` of an app (``runtime/background.py``): tests
    call it themselves, as the thread would, in the order and at the (moved) time they choose."""
    from checkpoint.services import services

    found = [t.run for t in services(application).background.tasks if t.name == name]
    assert found, f"the app has no background task {name!r}: {[t.name for t in services(application).background.tasks]}"
    return found[0]
