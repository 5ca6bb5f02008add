"""A promote request written straight through the store (which needs no MLflow), for tests that
want a row to be there: one to compare a database dump against, or one a worker claimed and died on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from checkpoint.events import audit
from checkpoint.storage import db
from checkpoint.storage.entities import PromoteRequest
from checkpoint.storage.store import Store

__all__ = ["DELETE_CHAMPION", "KEYS", "make_store", "memory_engine", "open_delete_alias", "open_one"]

KEYS = audit.Keyring.of("k" * 64)

DELETE_CHAMPION = {"kind": "delete_alias", "name": "m", "alias": "champion"}


def open_delete_alias(store: Store) -> PromoteRequest:
    """An open request by alice to delete model m's champion alias."""
    item, _ = store.open_request(
        author="alice",
        dedupe_key="k",
        event_data={"change": DELETE_CHAMPION},
        kind="delete_alias",
        model_name="m",
        version=None,
        target="alias:champion",
        change=DELETE_CHAMPION,
        title="t",
        description="",
        challenger={},
        champion=None,
        named_reviewers=[],
        rule_name="default",
    )
    return item


@contextmanager
def memory_engine() -> Iterator[sa.Engine]:
    """One in-memory SQLite database (a single shared connection), migrated to head."""
    engine = db.make_engine("sqlite://", poolclass=StaticPool)
    db.upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def make_store(engine: sa.Engine, **kwargs) -> Store:
    """A store on ``engine`` with a fixed audit key."""
    return Store(sessionmaker(engine, expire_on_commit=False), keys=KEYS, **kwargs)


def open_one(store: Store, author: str = "alice", key: str = "k1", model: str = "fraud"):
    """An open set_alias request (or the one open already for this author and key)."""
    return store.open_request(
        author=author,
        dedupe_key=key,
        event_data={"note": "ünïcode ✓"},
        kind="set_alias",
        model_name=model,
        version="2",
        target="alias:champion",
        change={"n": 1},
        title="promote v2",
        challenger={},
        champion=None,
    )
