"""Opening and applying batch requests (``batches.py`` holds the pure parts).

A batch is one request: reviewed once, under every change's rule (``Workflow.refusal`` asks
each; ``Checking.status`` combines them), each change's checks run. It applies in order, all or
nothing: before each change, what would undo it is read from MLflow (``batches.undo``); if a
change fails, the ones already applied are undone in reverse order, each compensation recorded
as a ``change_reverted`` event, and the request ends ``failed`` saying what happened. An undo
never overwrites a target somebody moved after the batch applied it: that step is left alone
and recorded ("could not undo … moved since"), in the log and the failure reason. A retry
goes through ``failed → approved → applying`` like any request (one conditional transition wins),
and a change already true in MLflow is not applied twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import replace

from checkpoint.identity import User
from checkpoint.registry import RegistryError
from checkpoint.review import batches, changes
from checkpoint.review.applying import Applying
from checkpoint.review.changes import Change
from checkpoint.review.workflow_base import (
    DESCRIPTION_MAX,
    NAME_MAX,
    NAMELESS,
    TARGET_MAX,
    TITLE_MAX,
    VERSION_MAX,
    WorkflowError,
    as_actor,
    check_text,
)
from checkpoint.storage.entities import APPLIED, APPLYING, FAILED, OPEN, EventKind, PromoteRequest

log = logging.getLogger("checkpoint.workflow")  # the name operators filter the JSON logs on


def batch_key(author: str, items: Sequence[Change]) -> str:
    """The dedupe key of a batch: its author and its changes, in order. The same planned changes
    find the same open request (``checkpoint apply`` run twice opens one)."""
    blob = json.dumps({"author": author, "batch": [c.to_json() for c in items]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _stored(change: dict) -> dict:
    """A change as compared for "the same batch": without what Checkpoint adds when it pins it."""
    return {k: v for k, v in change.items() if k != "resolved"}


class Batching(Applying):
    """The batch part of the Workflow: opening one request for several changes, applying it."""

    def open_batch(
        self,
        items: Sequence[Change],
        author: User | str,
        title: str = "",
        description: str = "",
        reviewers: tuple[str, ...] = (),
    ) -> tuple[PromoteRequest, bool]:
        """Open one request holding ``items`` (or return the open one this author has for the
        same changes). Every change is checked and pinned before anything is stored; one that
        would change nothing, names a version MLflow lacks or is not governed is a 400/409/422
        naming its index. A single change opens an ordinary request (``Workflow.open``)."""
        if len(items) == 1:
            return self.open(items[0], author, title, description, reviewers)  # type: ignore[attr-defined]
        actor = as_actor(author)
        if actor.anonymous:  # as for a single change: never authored by "anonymous"
            raise WorkflowError(401, "UNAUTHENTICATED", NAMELESS)
        author = actor.name
        pinned: list[Change] = []
        parts: list[dict] = []
        for i, change in enumerate(items):
            try:
                check_text("model name", change.model_name, NAME_MAX, required=True)
                check_text("target", change.target(), TARGET_MAX, required=True)
                check_text("version", change.version or "", VERSION_MAX)
                registry = self.registry_for(change.workspace)
                try:
                    change = change.resolve(registry)
                except changes.ChangeError as exc:
                    raise WorkflowError(400, exc.error_code, str(exc)) from exc
                if change.noop_answer(registry) is not None:
                    raise WorkflowError(409, "INVALID_STATE", f"already true: {change.describe()} would change nothing")
                challenger, champion = self._snapshots(change)
                if change.version and challenger is None and change.kind != "create_version":
                    raise WorkflowError(422, "RESOURCE_DOES_NOT_EXIST", f"'{change.name}' has no version {change.version}")
            except WorkflowError as exc:
                raise WorkflowError(exc.status, exc.error_code, f"changes[{i}]: {exc.message}") from exc
            rule = self.policy.rule_for(change.model_name, change.target(), change.workspace)
            pinned.append(change)
            parts.append(
                {
                    "change": change.to_json(),
                    "target": change.target(),
                    "title": change.title(),
                    "challenger": challenger or {},
                    "champion": champion,
                    "rule": rule.name,
                }
            )
        reviewers = tuple(dict.fromkeys(r.strip() for r in reviewers if r and r.strip()))
        if author in reviewers:
            raise WorkflowError(400, "INVALID_PARAMETER_VALUE", "you cannot name yourself as a reviewer")
        for change in pinned:
            rule = self.policy.rule_for(change.model_name, change.target(), change.workspace)
            self._check_named(rule, change.model_name, reviewers, change.workspace)  # type: ignore[attr-defined]
        models = list(dict.fromkeys(c.model_name for c in pinned))
        title = (title or "").strip() or f"{len(pinned)} changes to {', '.join(models)}"[:TITLE_MAX]
        check_text("title", title, TITLE_MAX, required=True)
        check_text("description", description or "", DESCRIPTION_MAX)
        first = parts[0]
        request, created = self.store.open_request(
            author=author,
            dedupe_key=batch_key(author, pinned),
            event_data={
                "changes": [p["change"] for p in parts],
                "description": "; ".join(c.describe() for c in pinned),
                "title": title,
            },
            kind=batches.KIND,
            model_name=pinned[0].model_name,
            version=pinned[0].version or (first["challenger"] or {}).get("version"),
            target=pinned[0].target(),
            change=first["change"],
            title=title,
            description=description or "",
            challenger=first["challenger"],
            champion=first["champion"],
            named_reviewers=list(reviewers),
            rule_name=batches.strictest([self.policy.rule_for(c.model_name, c.target(), c.workspace) for c in pinned]).name,
            workspace=pinned[0].workspace,
            changes=parts,
        )
        if created and self.check_specs(request):
            self._run_checks_safely(request.id, "open", author)
            request = self.store.get(request.id)
        return request, created

    def refuse_held(self, items: Sequence[Change], author: str) -> None:
        """The form's rule for a batch a person assembles: no change may act on a target an open
        request already holds (two open requests racing for one alias is a mistake made by hand,
        shown before anything is stored: a 409 naming the change and the request). The author's
        own open request for these very changes is no obstacle: opening finds it again."""
        wanted = [_stored(c.to_json()) for c in items]
        for i, change in enumerate(items):
            found, _ = self.store.list_requests(
                state=OPEN, model=change.model_name, target=change.target(), workspace=change.workspace, limit=5
            )
            for other in found:
                if other.author == author and [_stored(p["change"]) for p in other.changes or ()] == wanted:
                    continue
                raise WorkflowError(
                    409,
                    "RESOURCE_ALREADY_EXISTS",
                    f"changes[{i}]: {change.describe()}{change.where()} acts on a target open request #{other.id} "
                    "holds already; withdraw that request, or leave this change out",
                )

    # -- applying ------------------------------------------------------------------------

    def apply_batch(self, request: PromoteRequest, actor: str, forced: bool) -> PromoteRequest:
        """Apply a claimed batch (it is ``applying``): check every change, then apply them in
        order; on a failure, undo the applied ones and end ``failed``."""
        request_id = request.id
        views = batches.parts(request)
        items = [changes.from_json(v.change) for v in views]
        try:
            if not forced and self._batch_moved(request, views, items, actor):
                return self.store.get(request_id)
            blocked = None if forced else self._checks_before_apply(request, actor)
            unmet = None if forced else self._statuses_before_apply(request)
            if blocked or unmet:
                why = "; ".join(f"required check {c.name} is {c.status}: {c.reason}" for c in blocked or ())
                why = "; ".join(x for x in (why, unmet[1] if unmet else "") if x)
                self.store.transition(
                    request_id, (APPLYING,), OPEN, actor=actor, event=EventKind.REOPENED, reason=f"not applied: {why}"
                )
                return self.store.get(request_id)
        except RegistryError as exc:  # nothing applied yet
            return self._batch_failed(request_id, actor, f"MLflow refused or could not be reached: {exc}", {"error": str(exc)})
        done: list[tuple[int, Change, batches.Undo]] = []
        results: list[str] = []
        for i, change in enumerate(items):
            step = f"change {i + 1} of {len(items)}"
            try:
                registry = self.registry_for(change.workspace)
                if change.is_true(registry):
                    said = f"already true, nothing applied: {change.describe()}"
                    results.append(f"{step}: {said}")
                    self._batch_event(request_id, actor, EventKind.CHANGE_APPLIED, i, change, said, already_true=True)
                    continue
                result, undo = batches.apply(change, registry)
            except Exception as exc:  # any failure reverts what applied; a bug too
                if not isinstance(exc, RegistryError):
                    log.exception("batch request #%s: %s failed unexpectedly", request_id, step)
                return self._revert(request_id, actor, done, i, change, exc, len(items))
            done.append((i, change, undo))
            results.append(f"{step}: {result}")
            self._batch_event(request_id, actor, EventKind.CHANGE_APPLIED, i, change, result)
        summary = "; ".join(results)
        self.store.transition(
            request_id,
            (APPLYING,),
            APPLIED,
            actor=actor,
            event=EventKind.APPLIED,
            data={"result": summary, "break_glass": forced, "changes": len(items)},
            apply_result=summary,
            applied_at=self.clock.now(),
            reason=None if forced else "applied",
        )
        for view in views:
            self.refresh_checks(view.model_name, view.target, actor, skip=request_id, workspace=view.workspace)
        return self.store.get(request_id)

    def _batch_moved(self, request: PromoteRequest, views: list[PromoteRequest], items: list[Change], actor: str) -> bool:
        """Whether a change's challenger or champion moved since the reviews (as for a single
        request: approvals dismissed, snapshots refreshed, back to open). True when it did."""
        fresh, moved = [], None
        for i, (view, change) in enumerate(zip(views, items, strict=True)):
            challenger, champion = self._snapshots(change)
            # Each change against its own snapshot; the approvals are bound to all of them (below).
            why = self._moved(replace(view, reviews=()), challenger, champion)
            if why and moved is None:
                moved = f"change {i + 1} ({change.describe()}): {why}"
            fresh.append({**(request.changes or ())[i], "challenger": challenger or {}, "champion": champion})
        own = batches.digest(request)
        if moved is None and any(r.digest and r.digest != own for r in request.approvals):
            moved = "the approvals were given on other files than the changes hold now"
        if moved is None:
            return False
        self.store.dismiss_reviews(request.id, moved, actor)
        self.store.update_fields(
            request.id,
            actor=actor,
            event=EventKind.SNAPSHOTS_REFRESHED,
            data={"changes": [{"challenger": p["challenger"], "champion": p["champion"]} for p in fresh]},
            changes=fresh,
            challenger=fresh[0]["challenger"],
            champion=fresh[0]["champion"],
        )
        self.store.transition(
            request.id, (APPLYING,), OPEN, actor=actor, event=EventKind.REOPENED, reason=f"approvals dismissed: {moved}"
        )
        self._run_checks_safely(request.id, "refresh", actor)
        return True

    def _revert(
        self, request_id: int, actor: str, done: list, failed_at: int, change: Change, exc: Exception, total: int
    ) -> PromoteRequest:
        """Undo the applied changes of a batch, newest first, each compensation an event; then
        the request is ``failed`` with what happened (and what could not be undone, if any)."""
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RegistryError) else str(exc)
        self._batch_event(request_id, actor, EventKind.CHANGE_FAILED, failed_at, change, error)
        reverted, stuck = [], []
        for i, applied, undo in reversed(done):
            for n, step in enumerate(undo.steps):
                try:
                    registry = self.registry_for(step.workspace)
                    if n < len(undo.expect) and (now := batches.held(step, registry)) != undo.expect[n]:
                        moved = f"change {i + 1}: could not undo {step.describe()}: moved since it was applied, left as it is"
                        stuck.append(moved)
                        self._batch_event(request_id, actor, EventKind.REVERT_FAILED, i, step, moved, of=applied, now=str(now))
                        continue
                    step.apply(registry)
                except Exception as undo_exc:  # noqa: BLE001 - every other compensation is still tried
                    stuck.append(f"change {i + 1}: {step.describe()} failed: {undo_exc}")
                    self._batch_event(request_id, actor, EventKind.REVERT_FAILED, i, step, str(undo_exc), of=applied)
                    continue
                self._batch_event(request_id, actor, EventKind.CHANGE_REVERTED, i, step, step.describe(), of=applied)
            reverted.append(str(i + 1))
        what = f"change {failed_at + 1} of {total} ({change.describe()}) failed: {error}"
        if stuck:
            reason = f"{what}; COULD NOT UNDO: {'; '.join(stuck)}; MLflow is partly changed, see the event log"
        elif reverted:
            reason = f"{what}; changes {', '.join(reverted)} reverted, MLflow is as it was"
        else:
            reason = f"{what}; nothing had applied before it"
        data = {"error": error, "failed_change": failed_at, "reverted": [int(r) - 1 for r in reverted], "not_undone": stuck}
        return self._batch_failed(request_id, actor, reason, data)

    def _batch_failed(self, request_id: int, actor: str, reason: str, data: dict) -> PromoteRequest:
        log.warning("apply of batch request #%s failed: %s", request_id, reason)
        self.store.transition(
            request_id,
            (APPLYING,),
            FAILED,
            actor=actor,
            event=EventKind.APPLY_FAILED,
            data=data,
            apply_result=reason,
            reason=reason,
        )
        return self.store.get(request_id)

    def _batch_event(
        self, request_id: int, actor: str, kind: EventKind, index: int, change: Change, result: str, **extra: object
    ) -> None:
        """One step of a batch's apply in the event log (the audit chain): which change, what it did."""
        data: dict = {"index": index, "change": change.to_json(), "result": result}
        for key, value in extra.items():
            data[key] = value.to_json() if isinstance(value, Change) else value
        self.store.log_step(request_id, change.model_name, actor=actor, event=kind, data=data)
