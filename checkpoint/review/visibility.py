"""What a caller may see: the models MLflow lets them read, and nothing derived from others.

In ``mlflow`` identity mode Checkpoint reads the registry with its own account, so every page,
list and answer built from it is filtered by what MLflow lets *the caller* read, asked with the
caller's own ``Authorization`` header (``Registry.can_read``). MLflow admins read everything.
A token caller holds no MLflow password: their owner's rights are asked with Checkpoint's
account (``Registry.user_can_read``), in the workspace the call acts in.
In ``header`` and ``none`` modes MLflow has no per-user rights: everyone signed in sees
everything, as they would in MLflow itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from checkpoint.identity import User
from checkpoint.registry import Registry

T = TypeVar("T")
C = TypeVar("C")  # a page's cursor
# A list whose pages keep meeting unreadable models gives up re-querying after this many
# rounds and returns a shorter page (still only readable rows).
MAX_ROUNDS = 20


@dataclass
class Reader:
    """One caller's read rights, asked at most once per model per call."""

    user: User
    authorization: str = ""
    registry: Registry | None = None
    restricted: bool = False
    as_owner: bool = False  # a token: ask about its owner by name, with Checkpoint's account
    _seen: dict[tuple[str, str], bool] = field(default_factory=dict)

    def can_read(self, model: str, workspace: str = "") -> bool:
        if not self.restricted or not model:  # a row about no model holds nothing from the registry
            return True
        key = (workspace or "", model)
        if key not in self._seen:
            registry, authorization = self.registry, self.authorization
            if registry is not None and self.as_owner:
                self._seen[key] = registry.in_workspace(key[0]).user_can_read(self.user.name, model)
            else:
                self._seen[key] = registry is not None and bool(authorization) and registry.can_read(authorization, model, key[0])
        return self._seen[key]

    def can_read_change(self, change) -> bool:
        """A change names its model and, for a copy, the model it copies from: both must be readable."""
        workspace = getattr(change, "workspace", "") or ""
        return all(self.can_read(name, workspace) for name in change_models(change))

    def hidden(self, pairs: Iterable[tuple[str, str]]) -> frozenset[tuple[str, str]]:
        """Those of ``(workspace, model)`` pairs the caller may not read."""
        return frozenset(p for p in set(pairs) if not self.can_read(p[1], p[0]))

    def can_read_request(self, item) -> bool:
        """Whether every model a request's changes are about is readable (a batch: each change's)."""
        return all(self.can_read(model, workspace) for workspace, model in request_keys(item))

    def visible_page(
        self, fetch: Callable[[frozenset], tuple[list[T], C]], keys: Callable[[T], Iterable[tuple[str, str]]]
    ) -> tuple[list[T], C]:
        """A page from ``fetch(hidden)`` with no unreadable row, re-fetched with the newly found
        unreadable models excluded, so a page is full and no count of hidden rows shows. ``keys``:
        every (workspace, model) a row is about; one unreadable hides the row."""
        hidden: frozenset[tuple[str, str]] = frozenset()
        items, cursor = fetch(hidden)
        for _ in range(MAX_ROUNDS):
            found = self.hidden(k for i in items for k in keys(i)) - hidden
            if not found:
                return items, cursor
            hidden |= found
            items, cursor = fetch(hidden)
        return [i for i in items if all(self.can_read(m, w) for w, m in keys(i))], cursor


def change_models(change) -> tuple[str, ...]:
    """Every model a change touches: its own, and a ``models:/`` copy source's."""
    names = [change.model_name]
    source_ref = getattr(change, "source_ref", None)
    ref = source_ref() if callable(source_ref) else None
    if ref is not None and ref.name:  # a logged-model id (models:/m-...) names no registered model
        names.append(ref.name)
    return tuple(dict.fromkeys(names))


def request_key(item) -> tuple[str, str]:
    """A stored request's (workspace, model)."""
    return (getattr(item, "workspace", "") or "", item.model_name)


def request_keys(item) -> tuple[tuple[str, str], ...]:
    """Every (workspace, model) a stored request's changes are about: a batch's each change's."""
    parts = getattr(item, "changes", None)
    if not parts:
        return (request_key(item),)
    pairs = [((p.get("change") or {}).get("workspace") or "", str((p.get("change") or {}).get("name") or "")) for p in parts]
    return tuple(dict.fromkeys([request_key(item), *pairs]))


def reader_for(mode: str, registry: Registry, user: User, environ: dict) -> Reader:
    """The caller's reader: restricted only in ``mlflow`` mode, for non-admins."""
    restricted = mode == "mlflow" and not user.is_admin
    if user.token_id is not None:
        return Reader(user, "", registry, restricted, as_owner=True)
    return Reader(user, environ.get("HTTP_AUTHORIZATION", ""), registry, restricted)
