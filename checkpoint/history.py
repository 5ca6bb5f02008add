"""A model's promotion history, read from the event log: which version held which stage or
alias, from when to when, who asked and who approved ("what was in Production on 3 March?")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from checkpoint.store import Store


@dataclass(frozen=True)
class Entry:
    request_id: int
    target: str
    kind: str
    version: str | None
    summary: str
    applied_at: datetime
    until: datetime | None
    author: str
    approvers: tuple[str, ...]
    already_true: bool


def for_model(store: Store, name: str) -> list[Entry]:
    """Applied promotions of ``name``, oldest first; each holds until the next one for its target."""
    applied = [e for e in store.events(model=name) if e.kind == "applied" and e.request_id is not None]
    entries: list[Entry] = []
    last_for_target: dict[str, int] = {}
    for event in applied:
        item = store.get(event.request_id)
        entry = Entry(
            request_id=item.id, target=item.target, kind=item.kind, version=item.version,
            summary=event.data.get("result", item.apply_result), applied_at=event.created_at, until=None,
            author=item.author, approvers=tuple(sorted({r.reviewer for r in item.approvals})),
            already_true=bool(event.data.get("already_true")),
        )  # fmt: skip
        previous = last_for_target.get(item.target)
        if previous is not None:
            old = entries[previous]
            entries[previous] = Entry(**{**old.__dict__, "until": event.created_at})
        last_for_target[item.target] = len(entries)
        entries.append(entry)
    return entries
