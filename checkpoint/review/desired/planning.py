"""Comparing desired state with MLflow now: one Entry per declared target.

Each difference carries the changes that would make MLflow match, as the change kinds a
promote request already holds (``set_alias``, ``delete_alias``, ``transition``,
``create_version``), in the wire shape ``POST /requests`` takes: ``checkpoint apply`` will put
the ``changes`` of every entry, in plan order, into one batch request. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review import batches, content
from checkpoint.review.changes import ModelsRef, parse_models_uri
from checkpoint.review.desired.parsing import DesiredState, Want
from checkpoint.storage.entities import APPLYING, APPROVED, OPEN, PromoteRequest

# The states in which a request still holds its target: it may yet be applied.
HOLDING = (OPEN, APPROVED, APPLYING)
PLAN_FORMAT = 1  # the --json shape's version (docs/pipelines.md); bumped on any incompatible change


@dataclass(frozen=True)
class Reads:
    """What a plan reads, given by the caller (the web layer) so this module stays pure logic."""

    registry_for: Callable[[str], Registry]  # workspace → the registry adapter acting there
    holding_requests: Callable[[str, str, str], list[PromoteRequest]]  # workspace, model, target
    can_read: Callable[[str, str], bool]  # model, workspace → may the caller read it
    request_url: Callable[[int], str]
    digest_max_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One declared target. ``action``: ``no-op``, ``create``, ``update``, ``delete`` or ``error``."""

    want: Want
    action: str
    current: tuple[str, ...] = ()  # the versions holding it now (a copy: the target's newest)
    desired: str | None = None  # the version that should (a copy: the source's version)
    changes: tuple[dict, ...] = ()
    requests: tuple[dict, ...] = ()
    message: str = ""  # an error's reason; a copy's "same source" / "same files" / "same content"
    next_version: str | None = None  # a copy: the version number MLflow would give it

    def to_json(self) -> dict:
        w = self.want
        out: dict = {
            "model": w.model,
            "workspace": w.workspace or "default",
            "kind": w.kind,
            "target": target_of(w),
            "action": self.action,
            "current": list(self.current),
            "desired": self.desired,
            "changes": list(self.changes),
            "open_requests": list(self.requests),
            "message": self.message,
        }
        if w.kind == "copy":
            out["source"] = w.source
            out["next_version"] = self.next_version
        else:
            out["name"] = w.name
        return out


@dataclass(frozen=True)
class Plan:
    entries: tuple[Entry, ...] = field(default=())

    @property
    def drift(self) -> bool:
        return any(e.action in ("create", "update", "delete") for e in self.entries)

    @property
    def errors(self) -> int:
        return sum(e.action == "error" for e in self.entries)

    def to_json(self) -> dict:
        counts = {a: sum(e.action == a for e in self.entries) for a in ("create", "update", "delete", "no-op", "error")}
        return {"format": PLAN_FORMAT, "drift": self.drift, "counts": counts, "entries": [e.to_json() for e in self.entries]}


def target_of(want: Want) -> str:
    """The request target a want is about (as stored on promote requests)."""
    if want.kind == "copy":
        return f"model:{want.model}"
    return f"{want.kind}:{want.name}"


def plan(state: DesiredState, reads: Reads) -> Plan:
    return Plan(tuple(_entry(w, reads, state) for w in state.wants))


class _Refused(Exception):
    """A want that cannot be planned (an unknown model or version): an error entry."""


def _entry(want: Want, reads: Reads, state: DesiredState) -> Entry:
    registry = reads.registry_for(want.workspace)
    try:
        if not reads.can_read(want.model, want.workspace):
            raise _Refused(f"MLflow does not let you read '{want.model}'")
        if want.kind == "copy":
            entry = _copy(want, registry, reads, state)
        else:
            entry = _alias(want, registry) if want.kind == "alias" else _stage(want, registry)
    except _Refused as exc:
        return Entry(want, "error", message=str(exc))
    return _with_requests(entry, reads)


def _change(want: Want, kind: str, **fields: object) -> dict:
    out: dict = {"kind": kind, "name": want.model, **fields}
    if want.workspace:
        out["workspace"] = want.workspace
    return out


def _exists(registry: Registry, want: Want, version: str | None) -> None:
    """Refuse a want naming a model or version MLflow does not have."""
    for what, read in (
        (f"registered model '{want.model}'", lambda: registry.model(want.model)),
        (f"version {version} of '{want.model}'", lambda: version is None or registry.version(want.model, version)),
    ):
        try:
            read()
        except RegistryError as exc:
            if not exc.not_found:
                raise
            raise _Refused(f"{what} does not exist") from exc


def _alias(want: Want, registry: Registry) -> Entry:
    _exists(registry, want, want.version)
    holder = registry.alias_holder(want.model, want.name)
    current = (holder.version,) if holder else ()
    if want.version is None:
        if holder is None:
            return Entry(want, "no-op")
        return Entry(want, "delete", current, None, (_change(want, "delete_alias", alias=want.name),))
    if holder is not None and holder.version == want.version:
        return Entry(want, "no-op", current, want.version)
    action = "update" if holder else "create"
    return Entry(want, action, current, want.version, (_change(want, "set_alias", alias=want.name, version=want.version),))


def _stage(want: Want, registry: Registry) -> Entry:
    """Exactly ``want.version`` in the stage: others there are archived by the same transition."""
    _exists(registry, want, want.version)
    holders = sorted(registry.stage_holders(want.model, want.name), key=lambda v: int(v.version))
    current = tuple(v.version for v in holders)
    if want.version is None:
        if not holders:
            return Entry(want, "no-op")
        moves = tuple(_change(want, "transition", version=v, stage="Archived", archive_existing_versions=False) for v in current)
        return Entry(want, "delete", current, None, moves)
    if current == (want.version,):
        return Entry(want, "no-op", current, want.version)
    move = _change(want, "transition", version=want.version, stage=want.name, archive_existing_versions=True)
    return Entry(want, "update" if holders else "create", current, want.version, (move,))


def _copy(want: Want, registry: Registry, reads: Reads, state: DesiredState) -> Entry:
    """The target's newest version should carry the source's content: same ``models:`` source,
    same storage location (a copy's files are its source's), or the same content digest.

    A source naming an alias or stage the same file declares follows the declared version (the
    file is one desired state: ``copy_of: fraud@champion`` with ``champion: 7`` means version 7),
    and the change copies that exact version, so apply copies what the plan showed."""
    ref = parse_models_uri(want.source)
    assert ref is not None and ref.name is not None  # parsing accepted only such references
    if not reads.can_read(ref.name, want.workspace):
        raise _Refused(f"MLflow does not let you read '{ref.name}'")
    declared = next(
        (
            w
            for w in state.wants
            if (w.model, w.workspace) == (ref.name, want.workspace)
            and ((w.kind, w.name) == ("alias", ref.alias) or (w.kind == "stage" and w.name.lower() == (ref.stage or "").lower()))
        ),
        None,
    )
    if declared is not None and declared.version is None:
        raise _Refused(f"the copy's source is {ref.describe()}, which this file says must be empty")
    pinned = ModelsRef(name=ref.name, version=declared.version) if declared is not None else ref
    source = _source_version(registry, pinned)
    shown = f"{ref.name}/{source.version}"
    newest = registry.latest_version(want.model)
    current = (newest.version,) if newest else ()
    same = _same_content(registry, newest, source, reads.digest_max_bytes) if newest else ""
    if same:
        return Entry(want, "no-op", current, source.version, message=f"{same} {shown}")
    change = _change(want, "create_version", source=f"models:/{source.name}/{source.version}")
    following = str(int(newest.version) + 1) if newest else "1"
    return Entry(want, "create", current, source.version, (change,), message=f"from {shown}", next_version=following)


def _source_version(registry: Registry, ref: ModelsRef) -> Version:
    """The version a copy's source names now (an alias's holder, a stage's newest, the latest)."""
    name = ref.name or ""
    try:
        registry.model(name)
        if ref.version is not None:
            return registry.version(name, ref.version)
        if ref.alias is not None:
            held = registry.alias_holder(name, ref.alias)
        elif ref.stage is not None:
            held = max(registry.stage_holders(name, ref.stage), key=lambda v: int(v.version), default=None)
        else:
            held = registry.latest_version(name)
    except RegistryError as exc:
        if not exc.not_found:
            raise
        raise _Refused(f"the copy's source {ref.describe()} does not exist") from exc
    if held is None:
        raise _Refused(f"the copy's source {ref.describe()} does not exist")
    return held


def _same_content(registry: Registry, newest: Version, source: Version, budget: int) -> str:
    """How the newest version is known to hold the source's content ("" when it is not)."""
    if newest.source == f"models:/{source.name}/{source.version}":
        return "a copy of"
    if registry.download_uri(newest.name, newest.version) == registry.download_uri(source.name, source.version):
        return "the same files as"
    mine, theirs = (content.digest(registry, v, budget) for v in (newest, source))
    # No files is no evidence: two empty (or unreadable) directories are not "the same model".
    if mine.value and mine.files and mine.value == theirs.value and not (mine.partial or theirs.partial):
        return "the same content as"
    return ""


def _with_requests(entry: Entry, reads: Reads) -> Entry:
    """The entry with the promote requests that still hold its target (open, approved, applying)."""
    w = entry.want
    target = target_of(w)
    # A batch holds the target by one of its changes: that change (not its first) is what it does there.
    found = [_part_about(r, w.workspace, w.model, target) for r in reads.holding_requests(w.workspace, w.model, target)]
    marks = tuple(
        {
            "id": r.id,
            "state": r.state,
            "url": reads.request_url(r.id),
            "summary": _summary(r),
            "matches": _matches(r, entry),
        }
        for r in sorted(found, key=lambda r: r.id)
    )
    return Entry(entry.want, entry.action, entry.current, entry.desired, entry.changes, marks, entry.message, entry.next_version)


def _part_about(request: PromoteRequest, workspace: str, model: str, target: str) -> PromoteRequest:
    """The change of ``request`` about ``target`` of ``model`` (a batch's view of it; a single
    request is its own)."""
    return next(
        (p for p in batches.parts(request) if (p.workspace, p.model_name, p.target) == (workspace, model, target)), request
    )


def _summary(request: PromoteRequest) -> str:
    change = request.change
    kind = change.get("kind")
    if kind == "set_alias":
        return f"moves it to {change.get('version')}"
    if kind == "delete_alias":
        return "removes it"
    if kind == "transition":
        return f"moves version {change.get('version')} to {change.get('stage')}"
    if kind == "create_version":
        ref = parse_models_uri(change.get("resolved") or change.get("source") or "")
        if ref is not None and ref.name is not None:
            return f"copies {ref.name}/{ref.version}" if ref.version else f"copies {ref.describe()}"
    return request.title


def _matches(request: PromoteRequest, entry: Entry) -> bool:
    """Whether applying the request would make the target as declared."""
    change, want = request.change, entry.want
    kind = change.get("kind")
    if want.kind == "alias":
        if want.version is None:
            return kind == "delete_alias"
        return kind == "set_alias" and change.get("version") == want.version
    if want.kind == "stage":
        return kind == "transition" and change.get("version") == want.version and want.version is not None
    ref = parse_models_uri(change.get("resolved") or change.get("source") or "") if kind == "create_version" else None
    source = parse_models_uri(want.source)
    return ref is not None and source is not None and (ref.name, ref.version) == (source.name, entry.desired)
