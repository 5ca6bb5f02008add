"""A request's events as the lines its page reads: who did what, and what Checkpoint did about it.

The log keeps every step, each with the person whose action set it off as its ``actor`` (the
approval that made a request ``approved``, then ``applying``, then ``applied``, is bob's in all
four events). Read as is, that is four lines crediting bob with steps he never took ("bob
applying"). Here a person's action and the steps Checkpoint took because of it read as one line:
"bob approved — Checkpoint applied it: …". Steps with no action of a person before them (the
background work releasing a frozen apply, an approval expiring) are Checkpoint's own lines. The
stored events are not changed: the audit log, its export and the API keep every step as recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from checkpoint.review.behaviour.summary import line as behaviour_line
from checkpoint.storage.entities import Event, EventKind

SYSTEM = "Checkpoint"  # who a step reads as done by when no person did it
# A step this long after the one before it is not that one's consequence (checks and applies take
# seconds; an HTTP check may take a minute or two).
FOLLOW_GAP = timedelta(minutes=5)

# What a person does, in the past tense; ``None``: the kind is worded by :func:`_person_text`.
_PERSON: dict[str, str] = {
    EventKind.OPENED: "opened the request",
    EventKind.EDITED: "edited the request",
    EventKind.COMMENTED: "commented",
    EventKind.REVIEW_APPROVED: "approved",
    EventKind.REVIEW_REJECTED: "rejected",
    EventKind.WITHDRAWN: "withdrew the request",
    EventKind.BREAK_GLASS: "broke the glass",
    EventKind.RETRIED: "asked to apply it again",
    EventKind.SCHEDULED: "scheduled the apply",
    EventKind.STATUS_CHANGED: "posted a status",
}

# Steps that a transition goes on from at once (released → applying → applied).
_LEADS_ON = frozenset(
    {EventKind.APPROVED, EventKind.APPLYING, EventKind.RELEASED, EventKind.SNAPSHOTS_REFRESHED, EventKind.APPROVALS_DISMISSED}
)

# Steps that only lead to the next one: shown only when nothing came after them.
_PASSING = frozenset({EventKind.APPROVED, EventKind.APPLYING, EventKind.REJECTED})


@dataclass(frozen=True)
class Step:
    """One thing Checkpoint did (``text``), with what it said about it (``note``)."""

    text: str
    note: str = ""


@dataclass(frozen=True)
class Line:
    """One line of the timeline: ``who`` did ``text`` (with ``note``), then Checkpoint's ``steps``."""

    at: datetime
    who: str
    text: str
    note: str = ""
    steps: tuple[Step, ...] = ()
    event_ids: tuple[int, ...] = field(default=(), compare=False)

    @property
    def system(self) -> bool:
        """Whether the line is Checkpoint's own (no person's action began it)."""
        return self.who == SYSTEM


def _person_text(event: Event) -> tuple[str, str]:
    """What a person's event says, and its note (a comment, a reason, a status)."""
    data = event.data or {}
    kind = event.kind
    if kind == EventKind.STATUS_CHANGED:
        where = f" on v{data.get('version')} of {data.get('model')}" if data.get("scope") == "version" else ""
        described = f": {data['description']}" if data.get("description") else ""
        return f"posted a status: {data.get('context', '?')} is {data.get('state', '?')}{where}", described.lstrip(": ")
    if kind == EventKind.EDITED and data.get("fields"):
        return "edited the request", "changed " + ", ".join(str(f) for f in data["fields"])
    if kind == EventKind.SCHEDULED:
        return f"scheduled the apply for {data.get('apply_at', 'later')}", str(data.get("reason") or "")
    note = str(data.get("reason") or data.get("comment") or "")
    return _PERSON.get(kind, kind.replace("_", " ")), note


def _step(event: Event) -> Step:
    """What one of Checkpoint's own steps says."""
    data = event.data or {}
    kind = event.kind
    reason = str(data.get("reason") or "")
    if kind == EventKind.APPLIED:
        if data.get("already_true"):
            return Step("found it already true in MLflow: nothing to apply")
        return Step("applied it", str(data.get("result") or ""))
    if kind == EventKind.APPLY_FAILED:
        return Step("could not apply it", str(data.get("error") or ""))
    if kind == EventKind.APPLYING:
        return Step("is applying it")
    if kind == EventKind.APPROVED:
        return Step("approved the request", reason)
    if kind == EventKind.REJECTED:
        return Step("closed it as rejected")
    if kind == EventKind.REOPENED:
        return Step("reopened it", reason)
    if kind == EventKind.APPROVALS_DISMISSED:
        count = int(data.get("count") or 0)
        return Step(f"dismissed {count} approval{'s' if count != 1 else ''}", reason)
    if kind == EventKind.SNAPSHOTS_REFRESHED:
        return Step("read both versions again")
    if kind == EventKind.CHECK_FAILED:
        return Step(f"check {data.get('check', '?')} is {data.get('status', 'failing')}", str(data.get("reason") or ""))
    if kind == EventKind.BEHAVIOUR_FINISHED:
        return Step("finished the behavioural diff", behaviour_line(data))
    if kind == EventKind.APPROVAL_EXPIRED:
        return Step(f"expired {data.get('reviewer', 'a reviewer')}'s approval", f"older than {data.get('expire_after', '?')}")
    if kind == EventKind.WAITING:
        return Step("holds the apply back", reason)
    if kind == EventKind.RELEASED:
        return Step("released the apply: the wait is over")
    if kind == EventKind.CANCELLED:
        return Step("called off the waiting apply", reason)
    return Step(kind.replace("_", " "), reason)


def _squeeze(events: list[Event]) -> tuple[Step, ...]:
    """Checkpoint's steps after one action, without the ones that only led to the next."""
    kept = [e for i, e in enumerate(events) if e.kind not in _PASSING or i == len(events) - 1]
    # "approved the request" says why it moved on; it stays when it stopped there (waiting, reopened).
    if events and events[0].kind == EventKind.APPROVED and not any(e.kind == EventKind.APPLIED for e in events):
        kept = [events[0], *(e for e in kept if e is not events[0])]
    return tuple(_step(e) for e in kept)


def lines(events: Iterable[Event]) -> list[Line]:
    """``events`` (one request's, any order: read by id) as the page's lines, oldest first."""
    out: list[Line] = []
    lead: Event | None = None  # the person's event the steps below belong to
    steps: list[Event] = []

    def close() -> None:
        if lead is not None:
            text, note = _person_text(lead)
            out.append(Line(lead.created_at, lead.actor, text, note, _squeeze(steps), (lead.id, *(e.id for e in steps))))
        elif steps:
            squeezed = _squeeze(steps)
            first, rest = squeezed[0], squeezed[1:]
            out.append(Line(steps[0].created_at, SYSTEM, first.text, first.note, rest, tuple(e.id for e in steps)))

    for event in sorted(events, key=lambda e: e.id):
        if event.kind in _PERSON:
            close()
            lead, steps = event, []
        elif _follows(lead, steps, event):
            steps.append(event)
        else:
            close()
            lead, steps = None, [event]
    close()
    return out


def _follows(lead: Event | None, steps: list[Event], event: Event) -> bool:
    """Whether Checkpoint's step ``event`` was set off by the group before it: the same actor
    (the person whose action it follows, or the same background work), soon after, and for a
    group with no person's action, the step a transition leads on to."""
    last = steps[-1] if steps else lead
    if last is None or event.actor != last.actor or event.created_at - last.created_at > FOLLOW_GAP:
        return False
    return lead is not None or last.kind in _LEADS_ON
