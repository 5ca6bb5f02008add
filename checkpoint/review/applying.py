"""Approved → applied, exactly once, and noticing what moved on the way.

The request is claimed with a conditional state change (approved → applying) that only one
worker or replica can win, checked against the registry (already true? champion moved? files
changed? required checks still passing?), and only then applied. The snapshots taken here (who
holds the target, the digest of the files) are also what opening and reviewing compare with.

Approvals are counted again when the apply claims the request: under a rule with
``approvals_expire_after``, an approved request whose approvals expired while it waited (a failed
apply waiting for its retry; later, a freeze or a scheduled time) and no longer meet the rule is
not applied: the expiry is recorded and the request goes back to open ("approvals expired before
it applied"), for reviewers to approve again (``expiry.py``). A break-glass apply is not counted
again: it never needed the approvals.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from checkpoint.identity import User
from checkpoint.registry import RegistryError, Version
from checkpoint.review import changes, expiry, rollback, schedule, statuses
from checkpoint.review.changes import Change
from checkpoint.review.checking import Checking, check_line
from checkpoint.review.policy import Status
from checkpoint.review.workflow_base import WorkflowError, as_actor, digest_of, identity_of, short
from checkpoint.storage.entities import APPLIED, APPLYING, APPROVED, FAILED, OPEN, EventKind, PromoteRequest

log = logging.getLogger("checkpoint.workflow")  # the name operators filter the JSON logs on


class Applying(Checking):
    """The apply part of the Workflow, with the snapshots and observations it compares, and
    what holds an apply back or calls it off (a freeze, ``apply_at``, a cancel)."""

    if TYPE_CHECKING:  # defined by Workflow, next to reviewing; and by Batching

        def refusal(self, user: User | str, request: PromoteRequest) -> str | None: ...

        def apply_batch(self, request: PromoteRequest, actor: str, forced: bool) -> PromoteRequest: ...

    def _proceed(self, request_id: int, actor: str) -> PromoteRequest:
        """Open → approved → applied once approvals meet the rule and required checks pass
        (after a review, or a check turning to pass); the conditional transition makes it once."""
        request = self.store.get(request_id)
        status = self.status(request) if request.state == OPEN else None
        if status is not None and status.ready:
            reason = "approvals meet the policy" + ("; required checks pass" if self.check_specs(request) else "")
            if self.rule_of(request).required_statuses:
                reason += "; required statuses are success"
            data = self._fast_path(request)
            if data:
                rule = data[rollback.FAST_PATH]
                reason = f"fast-path rollback under rule '{rule}': {status.count} of {status.required} approvals"
                data = {**data, "reason": reason}  # the event says it too (webhooks' one-line summary)
            if self.store.transition(
                request_id, (OPEN,), APPROVED, actor=actor, event=EventKind.APPROVED, data=data, reason=reason
            ):
                return self.apply(request_id, actor=actor)
        return self.store.get(request_id)

    def _fast_path(self, request: PromoteRequest) -> dict:
        """What an event says of a verified rollback under a rule's ``rollback:`` fast path: the
        record and the rule ({} for any other request)."""
        rule = self.rule_of(request)
        if not rule.fast_path or request.rollback is None:
            return {}
        return {"rollback": request.rollback, rollback.FAST_PATH: rule.name, "required_approvals": rule.required_approvals}

    def apply(self, request_id: int, actor: str, forced: bool = False) -> PromoteRequest:
        """Apply an approved request exactly once (``forced``: break-glass, no stale check), unless a
        freeze or its apply_at holds it back: then it waits, approved (``schedule.py``)."""
        if not forced and self._held(request_id, actor):
            return self.store.get(request_id)
        if not self.store.transition(request_id, (APPROVED,), APPLYING, actor=actor, event=EventKind.APPLYING):
            return self.store.get(request_id)  # somebody else claimed it
        return self.apply_claimed(request_id, actor, forced)

    def _held(self, request_id: int, actor: str) -> bool:
        """Whether a freeze or the request's apply_at holds its apply back now; if so, recorded."""
        request = self.store.get(request_id)
        waiting = schedule.waiting_for(self.policy, request, self.clock.now())
        if waiting is None:
            return False
        reason = schedule.describe(self.policy, waiting)
        if self.store.wait(request_id, waiting, actor=actor, data={"reason": reason}):
            log.info("request #%s approved, %s", request_id, reason)
        return True

    def apply_claimed(self, request_id: int, actor: str, forced: bool = False) -> PromoteRequest:
        """Apply a request this caller claimed (moved to applying): check, apply, record."""
        request = self.store.get(request_id)
        lapsed = None if forced else self._expired_before_apply(request)
        if lapsed is not None:
            self.store.transition(
                request_id,
                (APPLYING,),
                OPEN,
                actor=actor,
                event=EventKind.REOPENED,
                data={"expired": list(lapsed.expired)},
                reason=f"approvals expired before it applied: {lapsed.line()}",
            )
            return self.store.get(request_id)
        if request.changes is not None:
            return self.apply_batch(request, actor, forced)
        try:
            change = changes.from_json(request.change)
            registry = self.registry_for(change.workspace)
            if change.is_true(registry):
                result = f"already true in MLflow, nothing applied: {change.describe()}"
                self.store.transition(
                    request_id,
                    (APPLYING,),
                    APPLIED,
                    actor=actor,
                    event=EventKind.APPLIED,
                    data={"already_true": True, "result": result},
                    apply_result=result,
                    applied_at=self.clock.now(),
                    reason="already true",
                )
                return self.store.get(request_id)
            challenger, champion = self._snapshots(change)
            champion_files = self._observe_files(change, champion, seen=request.champion)
            moved = None if forced else (self._moved(request, challenger, champion) or champion_files)
            if moved:
                self.store.dismiss_reviews(request_id, moved, actor)
                self.store.update_fields(
                    request_id,
                    actor=actor,
                    event=EventKind.SNAPSHOTS_REFRESHED,
                    data={"challenger": challenger, "champion": champion},
                    challenger=challenger or {},
                    champion=champion,
                )
                self.store.transition(
                    request_id, (APPLYING,), OPEN, actor=actor, event=EventKind.REOPENED, reason=f"approvals dismissed: {moved}"
                )
                self._run_checks_safely(request_id, "refresh", actor)  # against the new challenger / champion
                self._want_diff([request_id])
                return self.store.get(request_id)
            blocked = None if forced else self._checks_before_apply(request, actor)
            if blocked:
                self.store.transition(
                    request_id,
                    (APPLYING,),
                    OPEN,
                    actor=actor,
                    event=EventKind.REOPENED,
                    data={"checks": [c.name for c in blocked]},
                    reason="not applied: " + "; ".join(check_line(c) for c in blocked),
                )
                return self.store.get(request_id)
            unmet = None if forced else self._statuses_before_apply(request)
            if unmet:
                self.store.transition(
                    request_id,
                    (APPLYING,),
                    OPEN,
                    actor=actor,
                    event=EventKind.REOPENED,
                    data={"statuses": list(unmet[0])},
                    reason="not applied: " + unmet[1],
                )
                return self.store.get(request_id)
            result = change.apply(registry)
        except RegistryError as exc:
            log.warning("apply of request #%s failed: %s", request_id, exc)
            self.store.transition(
                request_id,
                (APPLYING,),
                FAILED,
                actor=actor,
                event=EventKind.APPLY_FAILED,
                data={"error": str(exc)},
                apply_result=str(exc),
                reason=f"MLflow refused or could not be reached: {exc}",
            )
            return self.store.get(request_id)
        except Exception as exc:  # a malformed answer or a bug: never leave the request claimed in 'applying'
            log.exception("apply of request #%s failed unexpectedly", request_id)
            message = f"unexpected error while applying: {type(exc).__name__}: {exc}"
            self.store.transition(
                request_id,
                (APPLYING,),
                FAILED,
                actor=actor,
                event=EventKind.APPLY_FAILED,
                data={"error": message},
                apply_result=message,
                reason=message,
            )
            return self.store.get(request_id)
        # A break-glass keeps its loud reason on the request; a normal apply says "applied".
        self.store.transition(
            request_id,
            (APPLYING,),
            APPLIED,
            actor=actor,
            event=EventKind.APPLIED,
            data={"result": result, "break_glass": forced, **self._rollback_data(request)},
            apply_result=result,
            applied_at=self.clock.now(),
            reason=None if forced else "applied",
        )
        self.refresh_checks(request.model_name, request.target, actor, skip=request_id, workspace=request.workspace)
        return self.store.get(request_id)

    def _statuses_before_apply(self, request: PromoteRequest) -> tuple[tuple[str, ...], str] | None:
        """The required statuses not success right before the apply (a ``failure`` posted while it
        waited for a freeze or its apply_at), and why, or None."""
        required = self.rule_of(request).required_statuses
        if not required:
            return None
        unmet = self.statuses_unmet(request, self.statuses_standing(request))
        return (tuple(label for label, _ in unmet), statuses.blocked_line(unmet)) if unmet else None

    def _rollback_data(self, request: PromoteRequest) -> dict:
        """A rollback's record on its ``applied`` event (the timeline's ``how: rollback``)."""
        if request.rollback is None:
            return {}
        return self._fast_path(request) or {"rollback": request.rollback}

    def _expired_before_apply(self, request: PromoteRequest) -> Status | None:
        """The approvals' standing when expired ones leave the rule unmet at the apply (their
        expiry is then recorded, and the apply does not happen), else None."""
        rule = self.rule_of(request)  # a batch: the shortest expiry of its changes' rules
        if rule.approvals_expire_after is None:
            return None
        status = self.status(request, results=[])  # approvals only: the checks are a later step
        if status.met or not status.expired:
            return None
        expiry.record(self.store, request, request.approvals, rule, self.clock.now(), (APPLYING,))
        return status

    @staticmethod
    def _moved(request: PromoteRequest, challenger: dict | None, champion: dict | None) -> str | None:
        if identity_of(request.champion) != identity_of(champion):
            before = f"v{request.champion['version']}" if request.champion else "none"
            after = f"v{champion['version']}" if champion else "none"
            return f"the champion moved since the reviews ({before} → {after})"
        if request.challenger and identity_of(request.challenger) != identity_of(challenger):
            return "the challenger changed since the reviews"
        if request.challenger and "digest" in request.challenger:
            current = digest_of(challenger)
            if current != digest_of(request.challenger) or any(r.digest and r.digest != current for r in request.approvals):
                return Applying._challenger_files_reason(request.challenger, challenger)
        return None

    @staticmethod
    def _challenger_files_reason(before: dict, after: dict | None) -> str:
        return (
            f"the challenger's files changed since the reviews (v{before['version']}: digest "
            f"{short(digest_of(before))} → {short(digest_of(after))})"
        )

    # -- what moved ------------------------------------------------------------------

    def _snapshots(self, change: Change) -> tuple[dict | None, dict | None]:
        registry = self.registry_for(change.workspace)
        challenger, champion = change.challenger(registry), change.champion(registry)
        self._observe(change, challenger, champion)
        snapshots = self._snapshot(challenger, change.workspace), self._snapshot(champion, change.workspace)
        self._observe_files(change, snapshots[1])
        return snapshots

    def _observe_files(self, change: Change, champion: dict | None, seen: dict | None = None) -> str | None:
        """Record an outside change when the champion's files differ from what Checkpoint last saw
        of that version (``seen``: the request's champion snapshot; by default the challenger of
        the last request applied to the target). Returns why, or None."""
        if champion is None or not champion.get("digest"):
            return None
        if seen is None:
            try:
                seen = self.store.last_applied_challenger(change.model_name, change.target(), change.workspace)
            except Exception:  # observing must never break opening
                log.warning("could not read the last applied request of %s", change.model_name, exc_info=True)
                return None
        if not seen or not seen.get("digest") or identity_of(seen) != identity_of(champion):
            return None
        if seen["digest"] == champion["digest"]:
            return None
        reason = (
            f"the champion's files changed outside Checkpoint (v{champion['version']}: digest "
            f"{short(seen['digest'])} → {short(champion['digest'])})"
        )
        try:
            self.store.record_outside_files_change(
                change.model_name,
                change.target(),
                champion["version"],
                seen["digest"],
                champion["digest"],
                workspace=change.workspace,
            )
        except Exception:  # as _observe
            log.warning("could not record an outside change of the files of %s", change.model_name, exc_info=True)
        return reason

    def _observe(self, change: Change, challenger: Version | None, champion: Version | None) -> None:
        """Record an "outside change" when a stage or alias holds a version Checkpoint did not put there.

        Derived from the reads just made: an alias change's champion is the alias's holder; a
        stage's holders are its champion and the challenger if it sits there already.
        """
        kind, _, name = change.target().partition(":")
        holders: list[str] | None = None
        if kind == "alias":
            version = champion.version if champion else None
        elif kind == "stage" and name not in ("None", "Archived"):
            held = [v.version for v in (champion, challenger) if v is not None and v.stage == name]
            version = max(held, key=int, default=None)
            holders = self._stage_holders(change, name)
        else:
            return
        try:
            if self.store.record_outside_change(
                change.model_name, change.target(), version, workspace=change.workspace, holders=holders
            ):
                self.refresh_checks(change.model_name, change.target(), actor="checkpoint", workspace=change.workspace)
        except Exception:  # observing must never break opening or applying
            log.warning("could not record an outside change of %s of %s", change.target(), change.model_name, exc_info=True)

    def _stage_holders(self, change: Change, stage: str) -> list[str] | None:
        """Every version in ``stage`` now, recorded with an outside change so the timeline knows
        which holders left (the champion names only the newest); None when MLflow cannot say."""
        try:
            found = self.registry_for(change.workspace).stage_holders(change.model_name, stage)
        except Exception:  # as _observe: observing never breaks opening or applying
            log.warning("could not list the holders of stage %s of %s", stage, change.model_name, exc_info=True)
            return None
        return sorted((v.version for v in found), key=int)

    def _overrides(self, request: PromoteRequest) -> dict:
        """What a break-glass now goes past, for its event: a freeze holding the target, a schedule."""
        at = self.clock.now()
        out: dict = {}
        hold = self.policy.frozen(request.model_name, request.target, at)
        if hold is not None:
            out["freeze_override"] = {"name": hold.freeze.name, "until": hold.until.isoformat(), "reason": hold.freeze.reason}
        if request.apply_at is not None and request.apply_at > at:
            out["schedule_override"] = {"apply_at": request.apply_at.isoformat()}
        return out

    def cancel(self, request_id: int, user: User | str) -> PromoteRequest:
        """Call off a scheduled or waiting apply: the request is withdrawn and never applies.

        Its author may, and so may anyone who may review it (a reviewer who approved it for a
        time may take that back before the time comes) and admins; nobody else.
        """
        actor = as_actor(user)
        request = self.store.get(request_id)
        if actor.name != request.author and not actor.is_admin and self.refusal(actor, request) is not None:
            raise WorkflowError(
                403,
                "PERMISSION_DENIED",
                f"only the author ({request.author}), a reviewer of this request or an admin may cancel its scheduled apply",
            )
        what = "waiting" if request.waiting_for else "scheduled"
        reason = f"{what} apply cancelled by {actor.name}"
        data = {
            "waiting_for": request.waiting_for.to_json() if request.waiting_for else None,
            "apply_at": request.apply_at.isoformat() if request.apply_at else None,
        }
        if not self.store.cancel(request_id, actor=actor.name, reason=reason, data=data):
            current = self.store.get(request_id)
            raise WorkflowError(
                409, "INVALID_STATE", f"request #{request_id} is {current.state} with no scheduled or waiting apply to cancel"
            )
        return self.store.get(request_id)

    def freeze_note(self, request: PromoteRequest) -> str | None:
        """When ``request`` would apply if a freeze (or its apply_at) holds it: for the MLflow client."""
        return schedule.freeze_note(self.policy, request, self.clock.now())
