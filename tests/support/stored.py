"""A promote request written straight through the store (which needs no MLflow), for tests that
want a row to be there: one to compare a database dump against, or one a worker claimed and died on."""

from __future__ import annotations

from checkpoint.storage.entities import PromoteRequest
from checkpoint.storage.store import Store

__all__ = ["DELETE_CHAMPION", "open_delete_alias"]

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
