"""A model's event log written as a story (opened, applied, break-glass, outside changes at given
minutes), for the timeline's and rollback's unit tests: no database, no MLflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from checkpoint.events import timeline
from checkpoint.events.timeline import Asked, Period
from checkpoint.storage.entities import Event

__all__ = ["T0", "US", "Log", "at", "row"]

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Log:
    """A model's event log and requests, written as a story."""

    def __init__(self, model: str = "fraud") -> None:
        self.model = model
        self.events: list[Event] = []
        self.asked: dict[int, Asked] = {}

    def _event(self, minute: int, kind: str, request_id: int | None, data: dict, actor: str = "bob") -> None:
        self.events.append(Event(len(self.events) + 1, request_id, self.model, kind, actor, data, at(minute)))

    def applied(
        self,
        minute: int,
        kind: str,
        target: str,
        version: str | None,
        *,
        author: str = "alice",
        approvers: tuple[str, ...] = ("bob",),
        change: dict | None = None,
        result: str = "done",
        workspace: str = "",
        title: str = "",
        **data,
    ) -> int:
        request_id = len(self.asked) + 1
        change = {"kind": kind, "name": self.model, **(change or {})}
        self.asked[request_id] = Asked(request_id, kind, target, version, change, author, approvers, title, workspace)
        self._event(minute, "opened", request_id, {}, actor=author)
        if data.get("break_glass"):
            self._event(minute, "break_glass", request_id, {"reason": data.pop("reason", "")}, actor="root")
        self._event(minute, "applied", request_id, {"result": result, **data})
        return request_id

    def outside(self, minute: int, target: str, version: str | None, first_seen: bool = False, **data) -> None:
        self._event(minute, "outside_change", None, {"target": target, "version": version, "first_seen": first_seen, **data})

    def lanes(
        self, workspace: str = "", stages: tuple[str, ...] = ("Staging", "Production"), latest: bool = True
    ) -> dict[str, list[tuple]]:
        built = timeline.build(list(reversed(self.events)), self.asked, workspace, stages, latest)  # replayed by id
        return {lane.target: [row(p) for p in lane.periods] for lane in built}


def row(p: Period) -> tuple:
    """A period as (version, start minute, until minute, how, request id)."""

    def minute(moment: datetime | None) -> int | None:
        return None if moment is None else int((moment - T0).total_seconds() // 60)

    return (p.version, minute(p.start), minute(p.until), p.how, p.request_id)
