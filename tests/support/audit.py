"""The audit trail's tests share: the key the tests sign with, a store on a database URL, a dozen
chained events, SQL straight at the database (the insider's tampering) and `checkpoint audit`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from checkpoint.events import audit
from checkpoint.storage import db
from checkpoint.storage.store import Store
from tests.support.processes import subprocess_env

__all__ = ["BIN", "KEY", "KEYS", "cli", "execute", "seed", "store_for"]

BIN = Path(sys.executable).parent
# The audit key the tests' Checkpoint signs with (as CHECKPOINT_AUDIT_KEY gives it in production).
KEY = "audit-key-for-tests-" + "5f" * 16
KEYS = audit.Keyring.of(KEY)


def store_for(url: str, keys: audit.Keyring | None = KEYS) -> Store:
    return Store(sessionmaker(db.make_engine(url), expire_on_commit=False), keys=keys)


def seed(store: Store, requests_: int = 3) -> list[int]:
    """A few requests with reviews, comments and state changes: a dozen chained events."""
    ids = []
    for i in range(requests_):
        item, _ = store.open_request(
            author="alice",
            dedupe_key=f"k{i}",
            event_data={"change": {"n": i}, "note": "ünïcode ✓"},
            kind="set_alias",
            model_name="fraud",
            version=str(i + 1),
            target="alias:champion",
            change={"n": i},
            title=f"promote v{i + 1}",
            challenger={},
            champion=None,
        )
        store.add_comment(item.id, "bob", "looks fine")
        store.add_review(item.id, "carol", "approve", "ok", states=("open",))
        store.transition(item.id, ("open",), "approved", actor="carol", event="approved")
        ids.append(item.id)
    return ids


def cli(*args: str, url: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    """`checkpoint audit ...` with the tests' key (``extra`` adds or, set to "", removes variables)."""
    env = {
        "PATH": str(BIN),
        "HOME": str(tmp_path),
        "CHECKPOINT_DATA_DIR": str(tmp_path / "data"),
        "CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:9",
        "CHECKPOINT_DATABASE_URL": url,
        "CHECKPOINT_AUDIT_KEY": KEY,
        **extra,
    }
    env = subprocess_env(**{k: v for k, v in env.items() if v})
    return subprocess.run([str(BIN / "checkpoint"), "audit", *args], env=env, capture_output=True, text=True, timeout=120)


def execute(url: str, sql: str, **params) -> None:
    with db.make_engine(url).begin() as conn:
        conn.execute(sa.text(sql), params)
