"""Batch requests: one request holding several changes, across models, applied in order, all or
nothing (issue 16 §4). The pure parts: reading the changes a client sends, the per-change view of
a stored batch, how the rules of its changes combine, and the compensating changes that undo one
change (read from MLflow just before it applies).

A batch holds only changes that can be undone exactly: aliases, stages, tags and a version's
creation (a copy). Deleting or renaming cannot be put back (a deleted version's number is gone),
so those are refused in a batch: they stay single requests.

The workflow's part that opens and applies batches is ``batching.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from checkpoint.registry import Registry, RegistryError
from checkpoint.review import changes
from checkpoint.review.changes import Change
from checkpoint.review.changes.base import _q
from checkpoint.review.policy import Rule, Status
from checkpoint.review.workflow_base import WorkflowError
from checkpoint.storage.entities import PromoteRequest

KIND = "batch"  # a batch request's ``kind`` (each change keeps its own)
MAX_CHANGES = 100
# The change kinds a batch may hold: the ones :func:`undo` can put back exactly.
BATCHABLE = ("set_alias", "delete_alias", "transition", "create_version", "set_tag", "delete_tag")


def parse_all(items: object) -> list[Change]:
    """Every change a client sent, each read by ``changes.parse``: all are checked before any is
    used, and the first bad one is a 400 naming its index (``changes[2]: ...``)."""
    if not isinstance(items, list) or not items:
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", "changes must be a non-empty list of change objects")
    if len(items) > MAX_CHANGES:
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"changes: at most {MAX_CHANGES} changes in one request")
    out = []
    for i, item in enumerate(items):
        try:
            change = changes.parse(item)
        except changes.ChangeError as exc:
            raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"changes[{i}]: {exc}") from exc
        if change.kind not in BATCHABLE:
            raise WorkflowError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"changes[{i}]: a {change.kind} change cannot be undone, so it cannot be in a batch "
                f"(a batch holds {', '.join(BATCHABLE)}); open it as a request of its own",
            )
        out.append(change)
    seen: dict[str, int] = {}
    for i, change in enumerate(out):
        key = f"{change.workspace}\n{change.model_name}\n{change.target()}\n{change.version}"
        if change.kind != "create_version" and key in seen:
            raise WorkflowError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"changes[{i}]: {change.describe()} acts on the same target as changes[{seen[key]}]",
            )
        seen.setdefault(key, i)
    return out


def is_batch(request: PromoteRequest) -> bool:
    return request.changes is not None


def parts(request: PromoteRequest) -> list[PromoteRequest]:
    """The request as each of its changes: a view with that change, its snapshots and its model
    and target, which every single-change rule, check and diff reads as it always did. A
    single-change request is its own one part."""
    if request.changes is None:
        return [request]
    out = []
    for part in request.changes:
        change = changes.from_json(part["change"])
        challenger = part.get("challenger") or {}
        out.append(
            replace(
                request,
                kind=change.kind,
                model_name=change.model_name,
                target=change.target(),
                version=change.version or challenger.get("version"),
                workspace=change.workspace,
                change=part["change"],
                challenger=challenger,
                champion=part.get("champion"),
                rule_name=part.get("rule", request.rule_name),
                changes=None,
            )
        )
    return out


def digest(request: PromoteRequest) -> str | None:
    """What a status posted on the request itself (and a review) is bound to: its challenger's
    content digest; a batch's, every change's digest in order (a file re-logged under any of
    them is new content for the whole request)."""
    if request.changes is None:
        return (request.challenger or {}).get("digest")
    found = [(part.get("challenger") or {}).get("digest") for part in request.changes]
    if all(d is None for d in found):
        return None
    return hashlib.sha256(json.dumps(found).encode()).hexdigest()


def combine(statuses: Sequence[Status]) -> Status:
    """Where a batch stands: every change's rule must be met, so the most approvals any of them
    needs, everyone any of them awaits, every blocker."""
    if len(statuses) == 1:
        return statuses[0]

    def union(name: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(x for s in statuses for x in getattr(s, name)))

    worst = max(statuses, key=lambda s: (not s.met, s.required - s.count))
    return Status(
        count=min(s.count for s in statuses),
        required=max(s.required for s in statuses),
        approvers=tuple(sorted(set.intersection(*(set(s.approvers) for s in statuses)))),
        awaited=union("awaited") if any(not s.met for s in statuses) else (),
        awaited_required=union("awaited_required") if not worst.met else (),
        blocked_by=union("blocked_by"),
        expired=union("expired"),
        blocked_by_statuses=union("blocked_by_statuses"),
    )


def strictest(rules: Sequence[Rule]) -> Rule:
    """The rules of a batch's changes as one, for what is asked of the whole request: the most
    approvals, every listed reviewer, self-approval only if every rule allows it, the shortest
    approval expiry, every required status. (Who may approve is asked of each change's own
    rule: ``Workflow.refusal``; how far approvals go, of each: ``combine``.)"""
    unique = list({r.name: r for r in rules}.values())
    if len(unique) == 1:
        return unique[0]
    numbers = [r.required_approvals for r in unique if isinstance(r.required_approvals, int)]
    expiries = [r.approvals_expire_after for r in unique if r.approvals_expire_after is not None]
    required = {s.context: s for r in unique for s in r.required_statuses}
    return Rule(
        name=" + ".join(r.name for r in unique),
        reviewers=tuple(dict.fromkeys(u for r in unique for u in r.reviewers)),
        groups=tuple(dict.fromkeys(g for r in unique for g in r.groups)),
        required_approvals="all" if len(numbers) < len(unique) else max(numbers),
        allow_self_approval=all(r.allow_self_approval for r in unique),
        approvals_expire_after=min(expiries) if expiries else None,
        required_statuses=tuple(required.values()),
    )


# -- undoing one change -----------------------------------------------------------------


@dataclass(frozen=True)
class Undo:
    """What puts one applied change back: the compensating changes, in the order they run, and
    what each one's target holds once the change applied (``expect``, read off the change, not
    from MLflow). An undo step runs only while its target still holds that: a target somebody
    moved since is theirs now, and is left alone."""

    steps: tuple[Change, ...]
    expect: tuple[object, ...] = ()


def undo(change: Change, registry: Registry) -> Undo:
    """The changes that put MLflow back as it is now, should ``change`` be applied and then need
    reverting: read right before it applies. A copy's undo is known only after it applied
    (:func:`apply`)."""
    ws = {"workspace": change.workspace}
    if isinstance(change, changes.SetAlias | changes.DeleteAlias):
        holder = registry.alias_holder(change.name, change.alias)
        if holder is None:
            return Undo((changes.DeleteAlias(change.name, alias=change.alias, **ws),))
        return Undo((changes.SetAlias(change.name, alias=change.alias, version_=holder.version, **ws),))
    if isinstance(change, changes.Transition):
        before = registry.version(change.name, change.version)
        steps: list[Change] = [
            changes.Transition(change.name, version_=change.version, stage=before.stage, archive_existing_versions=False, **ws)
        ]
        if change.archive_existing_versions and change.stage.lower() in ("production", "staging"):
            for other in registry.stage_holders(change.name, change.stage):
                if other.version != change.version:
                    steps.append(
                        changes.Transition(
                            change.name, version_=other.version, stage=other.stage, archive_existing_versions=False, **ws
                        )
                    )
        return Undo(tuple(steps))
    if isinstance(change, changes.SetTag):  # and DeleteTag, its subclass
        tags = change._tags(registry)
        if change.key in tags:
            return Undo((changes.SetTag(change.name, version_=change.version_, key=change.key, value=tags[change.key], **ws),))
        return Undo((changes.DeleteTag(change.name, version_=change.version_, key=change.key, **ws),))
    if isinstance(change, changes.CreateVersion):
        try:
            registry.model(change.name)
            existed = True
        except RegistryError as exc:
            if not exc.not_found:
                raise
            existed = False
        # The created version is deleted (known once it applied); a model the copy created goes too.
        return Undo(() if existed else (changes.DeleteModel(change.name, **ws),))
    raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"a {change.kind} change cannot be undone")


def apply(change: Change, registry: Registry) -> tuple[str, Undo]:
    """Apply ``change``; its result, and the undo of exactly what it did (a copy: the version
    MLflow answered it created, never "the newest one", which another account may have made)."""
    before = undo(change, registry)
    if isinstance(change, changes.CreateVersion):
        created = change.create(registry)
        delete = changes.DeleteVersion(change.name, version_=created.version, workspace=change.workspace)
        # The version still the one created; the model (if the copy created it) holding no other version.
        expect = ((created.source, created.run_id), *(() for _ in before.steps))
        return change.said(created), Undo((delete, *before.steps), tuple(expect))
    result = change.apply(registry)
    if isinstance(change, changes.SetAlias | changes.DeleteAlias):
        left: tuple[object, ...] = (change.version if isinstance(change, changes.SetAlias) else None,)
    elif isinstance(change, changes.Transition):
        left = (change.stage.lower(), *("archived" for _ in before.steps[1:]))
    else:  # a tag: its new value, or none
        left = (None if isinstance(change, changes.DeleteTag) else change.value,)  # type: ignore[attr-defined]
    return result, Undo(before.steps, left)


def held(step: Change, registry: Registry) -> object:
    """What ``step``'s target holds now, as :attr:`Undo.expect` says it (to compare with it)."""
    if isinstance(step, changes.SetAlias | changes.DeleteAlias):
        holder = registry.alias_holder(step.name, step.alias)
        return holder.version if holder else None
    if isinstance(step, changes.Transition | changes.DeleteVersion):
        try:
            version = registry.version(step.name, step.version)
        except RegistryError as exc:
            if exc.not_found:
                return None
            raise
        return version.stage.lower() if isinstance(step, changes.Transition) else (version.source, version.run_id)
    if isinstance(step, changes.SetTag):
        return step._tags(registry).get(step.key)
    if isinstance(step, changes.DeleteModel):
        return tuple(v.version for v in registry.search_versions(f"name = '{_q(step.name)}'"))
    raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"a {step.kind} step has no target to compare")
