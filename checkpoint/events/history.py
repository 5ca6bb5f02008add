"""A model's promotion history, read from the event log: which version held which stage or
alias, from when to when, who asked and who approved ("what was in Production on 3 March?")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from checkpoint.review import changes
from checkpoint.storage.entities import EventKind
from checkpoint.storage.store import Store


@dataclass(frozen=True)
class Entry:
    request_id: int | None  # None: changed in MLflow without Checkpoint (an "outside change")
    target: str
    kind: str
    version: str | None
    summary: str
    applied_at: datetime
    until: datetime | None
    author: str
    approvers: tuple[str, ...]
    already_true: bool
    first_seen: bool = False

    @property
    def outside(self) -> bool:
        return self.request_id is None


def _step(store: Store, event, workspace: str) -> Entry | None:
    """A batch's step as an entry of the model it changed (None: another workspace, unreadable)."""
    try:
        change = changes.from_json(event.data.get("change") or {})
    except (changes.ChangeError, TypeError):
        return None
    if change.workspace != workspace:
        return None
    item = store.get(event.request_id)
    reverted = event.kind == EventKind.CHANGE_REVERTED
    return Entry(
        request_id=item.id,
        target=change.target(),
        kind=change.kind,
        version=change.version,
        summary=("reverted: " if reverted else "") + str(event.data.get("result", "")),
        applied_at=event.created_at,
        until=None,
        author=item.author,
        approvers=tuple(sorted({r.reviewer for r in item.approvals})),
        already_true=bool(event.data.get("already_true")),
    )


def for_model(store: Store, name: str, workspace: str = "") -> list[Entry]:
    """Applied promotions of ``name`` (the model of that name in MLflow ``workspace``, "" = the
    default one) and changes made behind Checkpoint's back, oldest first; each holds until the
    next one for its target. Read from the audit log only."""
    entries: list[Entry] = []
    last_for_target: dict[str, int] = {}
    for event in store.events(model=name):
        if event.kind in (EventKind.CHANGE_APPLIED, EventKind.CHANGE_REVERTED) and event.request_id is not None:
            step = _step(store, event, workspace)  # one change of a batch request, or its compensation
            if step is None:
                continue
            entry = step
        elif event.kind == EventKind.APPLIED and event.request_id is not None:
            item = store.get(event.request_id)
            if item.workspace != workspace or item.changes is not None:  # a batch: its steps are the entries
                continue
            entry = Entry(
                request_id=item.id,
                target=item.target,
                kind=item.kind,
                version=item.version,
                summary=event.data.get("result", item.apply_result),
                applied_at=event.created_at,
                until=None,
                author=item.author,
                approvers=tuple(sorted({r.reviewer for r in item.approvals})),
                already_true=bool(event.data.get("already_true")),
            )
        elif event.kind == EventKind.OUTSIDE_CHANGE:
            if event.data.get("workspace", "") != workspace:
                continue
            target, version = event.data.get("target", ""), event.data.get("version")
            entry = Entry(
                request_id=None,
                target=target,
                kind="outside_change",
                version=version,
                summary=(
                    f"the files of v{version} ({target}) changed in MLflow"
                    if event.data.get("files")
                    else f"{target} found at {'v' + version if version else 'no version'} in MLflow"
                ),
                applied_at=event.created_at,
                until=None,
                author="outside Checkpoint",
                approvers=(),
                already_true=False,
                first_seen=bool(event.data.get("first_seen")),
            )
        else:
            continue
        previous = last_for_target.get(entry.target)
        if previous is not None:
            old = entries[previous]
            entries[previous] = Entry(**{**old.__dict__, "until": event.created_at})
        last_for_target[entry.target] = len(entries)
        entries.append(entry)
    return entries
