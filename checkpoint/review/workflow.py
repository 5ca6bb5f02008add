"""The promote request's life: open → approved → applied / failed (retry), or rejected /
withdrawn; back to open with approvals dismissed when the champion or challenger moved.

This module opens, edits and reviews requests; the parts it is composed of (see
``workflow_base.py``) check them (``checking.py``), apply them exactly once (``applying.py``) and
choose what a rollback puts back (``rolling_back.py``).
"""

from __future__ import annotations

import hashlib
import logging

from checkpoint.identity import User
from checkpoint.registry import RegistryError, RegistryUnavailable, Version
from checkpoint.review import batches, changes, checks, content, mentions, rollback, schedule
from checkpoint.review.batching import Batching
from checkpoint.review.changes import Change
from checkpoint.review.posting import Posting
from checkpoint.review.rolling_back import RollingBack
from checkpoint.review.workflow_base import (
    COMMENT_MAX,
    DESCRIPTION_MAX,
    NAME_MAX,
    NAMELESS,
    TARGET_MAX,
    TITLE_MAX,
    USER_MAX,
    VERSION_MAX,
    WorkflowError,
    as_actor,
    as_user,
    check_text,
    digest_of,
    identity_of,
    short,
)
from checkpoint.storage.entities import APPROVED, FAILED, OPEN, REJECTED, WITHDRAWN, EventKind, PromoteRequest

# Callers import these from here, where requests are opened and reviewed.
__all__ = ["COMMENT_MAX", "DESCRIPTION_MAX", "NAME_MAX", "TITLE_MAX", "USER_MAX", "Workflow", "WorkflowError", "short"]

log = logging.getLogger("checkpoint.workflow")  # the name operators filter the JSON logs on


def _is_prompt_version(version: Version) -> bool:
    """A version MLflow registered as a prompt version (its source is a placeholder, no files)."""
    return version.tags.get(changes.PROMPT_TAG, "").lower() == "true"


class Workflow(RollingBack, Posting, Batching):
    """Every operation on promote requests; built once per process (``services.py``) with the
    fields of ``WorkflowBase``: store, registry, governance, policy, and the optional ones."""

    # -- opening ---------------------------------------------------------------------

    def governed(self, change: Change) -> str | None:
        """Why ``change`` needs review, or None. Prompts share the registry and pass."""
        registry = self.registry_for(change.workspace)
        reason = change.governed(self.governance, registry)
        if reason and self._prompt_exempt(change):
            return None
        return reason

    def already_true(self, change: Change) -> dict | None:
        """MLflow's own answer to a governed call that would change nothing (read from MLflow
        now; see Change.noop_answer), or None: then it is a real change and needs a request.
        A source MLflow would refuse is not judged here (opening the request refuses it)."""
        registry = self.registry_for(change.workspace)
        try:
            return change.resolve(registry).noop_answer(registry)
        except changes.ChangeError:
            return None

    def creates_for_caller(self, change: Change) -> bool:
        """Whether Checkpoint makes this ungoverned change itself, with its own account.

        An empty model under a protected name serves nothing, so creating one needs no review
        (``copy_model_version`` creates the target first). But in ``mlflow`` mode its creator
        holds MANAGE on it, and MANAGE decides who may approve where a rule names no reviewers:
        a protected name created by an ordinary user would be theirs to approve into, with a
        second account. So Checkpoint's account creates it, and nobody else owns it.
        """
        return change.kind == "create_model" and self.governance.model_protected(change.name)

    def create_for_caller(self, change: Change, caller: str) -> dict:
        """Create the protected model for ``caller`` (see :meth:`creates_for_caller`); MLflow's
        answer, or its error (a name that exists already) as a RegistryError."""
        registry = self.registry_for(change.workspace)  # in the caller's workspace, not the default one
        created = registry.create_model(change.name, getattr(change, "body", None))
        log.info("created protected model %r for %s with Checkpoint's account", change.name, caller)
        return created

    def _prompt_exempt(self, change: Change) -> bool:
        """Whether an alias or tag change is a prompt's own business and skips review.

        Never for the prompt marker itself (set or delete, model or version: the disguise), and
        only for versions that are prompt versions: MLflow registers a version with a real model
        source into a prompt-marked model too, and such a version is a model whatever its container.
        """
        if change.kind not in ("set_alias", "delete_alias", "set_tag", "delete_tag"):
            return False
        if getattr(change, "key", None) == changes.PROMPT_TAG:
            return False
        registry = self.registry_for(change.workspace)
        try:
            if not registry.model(change.name).is_prompt:
                return False
            if change.kind == "delete_alias":
                version = registry.alias_holder(change.name, change.alias)  # type: ignore[attr-defined]
            elif change.version is not None:
                version = registry.version(change.name, change.version)
            else:
                return True  # a tag of the prompt itself
        except RegistryError as exc:
            if exc.not_found:
                return False
            raise
        return version is None or _is_prompt_version(version)

    def open(
        self,
        change: Change,
        author: User | str,
        title: str = "",
        description: str = "",
        reviewers: tuple[str, ...] = (),
        apply_at: str | None = None,
        rollback_plan: rollback.Plan | None = None,
    ) -> tuple[PromoteRequest, bool]:
        """Open a request for ``change`` (or return the open one this author has for it).

        ``reviewers`` names people the author asks: it only adds them to the awaited list, so
        each must be able to approve under the rule on their own (a 400 here, not a dead end).
        A moving ``models:`` source is pinned to the version it names now. ``apply_at`` (ISO,
        ahead): once approved, it applies then, not before (schedule.py). ``rollback_plan``
        (only from :meth:`open_rollback`): the request is a rollback, judged against the
        challenger's snapshot taken here (refused, or recorded verified or not).
        """
        actor = as_actor(author)
        if actor.anonymous:  # who asked must be a name, never "anonymous" (the channels say how to give one)
            raise WorkflowError(401, "UNAUTHENTICATED", NAMELESS)
        author = actor.name
        when = schedule.check_apply_at(apply_at, self.clock.now())
        check_text("model name", change.model_name, NAME_MAX, required=True)
        check_text("target", change.target(), TARGET_MAX, required=True)
        check_text("version", change.version or "", VERSION_MAX)
        try:
            change = change.resolve(self.registry_for(change.workspace))
        except changes.ChangeError as exc:
            raise WorkflowError(400, exc.error_code, str(exc)) from exc
        if change.noop_answer(self.registry_for(change.workspace)) is not None:
            raise WorkflowError(
                409, "INVALID_STATE", f"already true: {change.describe()}{change.where()} would change nothing; no request opened"
            )
        rule = self.policy.rule_for(change.model_name, change.target(), change.workspace)
        reviewers = tuple(dict.fromkeys(r.strip() for r in reviewers if r and r.strip()))
        if author in reviewers:
            raise WorkflowError(400, "INVALID_PARAMETER_VALUE", "you cannot name yourself as a reviewer")
        self._check_named(rule, change.model_name, reviewers, change.workspace)
        title = (title or "").strip() or change.title()
        check_text("title", title, TITLE_MAX, required=True)
        check_text("description", description or "", DESCRIPTION_MAX)
        challenger, champion = self._snapshots(change)
        found = None if rollback_plan is None else self._rollback_record(rollback_plan, challenger)
        if change.version and challenger is None and change.kind not in ("create_version",):
            raise WorkflowError(
                422, "RESOURCE_DOES_NOT_EXIST", f"'{change.name}' has no version {change.version}: nothing to promote"
            )
        dedupe = change.dedupe_key(author)
        if found is not None:  # a rollback is not the same request as the plain promotion of that version
            dedupe = hashlib.sha256(f"rollback:{dedupe}".encode()).hexdigest()
        request, created = self.store.open_request(
            author=author,
            dedupe_key=dedupe,
            event_data={
                "change": change.to_json(),
                "description": change.describe(),
                "title": title,
                **({"rollback": found} if found is not None else {}),
            },
            kind=change.kind,
            model_name=change.model_name,
            version=change.version or (challenger or {}).get("version"),
            target=change.target(),
            change=change.to_json(),
            title=title,
            description=description or "",
            challenger=challenger or {},
            champion=champion,
            named_reviewers=list(reviewers),
            rule_name=rule.name,
            workspace=change.workspace,
            rollback=found,
        )
        if not created and when is not None and request.apply_at != when:
            # The open request this author already has for the change is the answer to a retry;
            # a different time must not vanish silently, nor move a request someone approved.
            held = f"apply_at {request.apply_at.isoformat()}" if request.apply_at else "no apply_at"
            raise WorkflowError(
                409,
                "RESOURCE_ALREADY_EXISTS",
                f"apply_at: request #{request.id} for this change is already open with {held}; "
                "withdraw it to ask for another time",
            )
        if created:
            self._want_diff([request.id])  # the page's diff, read before anyone looks
        if created and when is not None:
            self.store.schedule(request.id, when, actor=author, states=(OPEN,), data={"by": "author"})
            request = self.store.get(request.id)
        if created and rule.checks:
            self._run_checks_safely(request.id, "open", author)
            request = self.store.get(request.id)
        if created and rollback.verified(request):  # a fast path of 0 approvals applies now
            request = self._proceed(request.id, author)
        return request, created

    def artifact_refusal(self, write: content.ArtifactWrite) -> content.Refusal | None:
        """Why an artifact write or delete may not pass: it reaches a registered version's files
        (looked up in the MLflow workspace the call acts in)."""
        return content.refusal(self.registry_for(write.workspace), write)

    def _check_named(self, rule, model: str, reviewers: tuple[str, ...], workspace: str = "") -> None:
        """Refuse a named reviewer who could not approve: naming grants no right.

        Users listed by the rule pass; under a ``groups:`` rule an unlisted name cannot be checked
        for membership here (groups arrive with each caller's own sign-in), so it is accepted and
        the approval itself is checked; in ``mlflow`` mode the MANAGE right is asked of MLflow.
        """
        if rule.restricted:
            outside = [r for r in reviewers if r not in rule.reviewers]
            if outside and not rule.groups:
                raise WorkflowError(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    f"{', '.join(outside)} may not review under rule '{rule.name}' (reviewers: {', '.join(rule.reviewers)})",
                )
            return
        right = self._review_right(workspace)
        if right is not None:
            refused = [r for r in reviewers if not right(User(r), model) and not self.registry.is_admin(r)]
            if refused:
                raise WorkflowError(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    f"{', '.join(refused)} may not review requests for '{model}' "
                    "(needs MANAGE on the model in MLflow); naming a reviewer grants no right",
                )

    # -- the author's edits ----------------------------------------------------------

    def edit(self, request_id: int, user: User | str, title: str | None, description: str | None) -> PromoteRequest:
        user = as_user(user).name
        request = self.store.get(request_id)
        if user != request.author:
            raise WorkflowError(403, "PERMISSION_DENIED", f"only the author ({request.author}) may edit this request")
        if request.state != OPEN:
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {request.state}; only open ones can be edited")
        values = {}
        if title is not None:
            check_text("title", title.strip(), TITLE_MAX, required=True)
            values["title"] = title.strip()
        if description is not None:
            check_text("description", description, DESCRIPTION_MAX)
            values["description"] = description
        if values:
            # The new title goes into the log too, so webhook bodies built from events never change.
            data = {"fields": sorted(values), **({"title": values["title"]} if "title" in values else {})}
            added = mentions.newly_mentioned(request.description, values.get("description"))
            if added:  # who the edit newly asks to look (they are emailed; events/notifications)
                data["mentioned"] = list(added)
            self.store.update_fields(request_id, actor=user, event=EventKind.EDITED, data=data, **values)
        return self.store.get(request_id)

    def withdraw(self, request_id: int, user: User | str) -> PromoteRequest:
        user = as_user(user).name
        request = self.store.get(request_id)
        if user != request.author:
            raise WorkflowError(403, "PERMISSION_DENIED", f"only the author ({request.author}) may withdraw this request")
        if not self.store.transition(request_id, (OPEN, FAILED), WITHDRAWN, actor=user, event=EventKind.WITHDRAWN):
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}")
        return self.store.get(request_id)

    def comment(self, request_id: int, user: User | str, body: str) -> PromoteRequest:
        check_text("body", body.strip(), COMMENT_MAX, required=True)
        self.store.add_comment(request_id, as_actor(user).name, body)
        return self.store.get(request_id)

    # -- reviews ---------------------------------------------------------------------

    def review(
        self, request_id: int, user: User | str, verdict: str, comment: str = "", apply_at: str | None = None
    ) -> PromoteRequest:
        """Approve or reject; the approval that meets the policy applies the change (at
        ``apply_at`` when the approving reviewer gives one: it replaces the author's)."""
        if verdict not in ("approve", "reject"):
            raise WorkflowError(400, "INVALID_PARAMETER_VALUE", "verdict must be 'approve' or 'reject'")
        if apply_at is not None and verdict != "approve":
            raise WorkflowError(400, "INVALID_PARAMETER_VALUE", "apply_at: only an approval can schedule the apply")
        when = schedule.check_apply_at(apply_at, self.clock.now())
        check_text("comment", comment, COMMENT_MAX)
        user = as_actor(user)
        request = self.store.get(request_id)
        refusal = self.refusal(user, request)
        if refusal:
            raise WorkflowError(403, "PERMISSION_DENIED", refusal)
        digest = self._review_digest(request, user.name)
        if not self.store.add_review(request_id, user.name, verdict, comment, states=(OPEN,), digest=digest):
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}, not open")
        if when is not None:
            self.store.schedule(request_id, when, actor=user.name, states=(OPEN,), data={"by": "reviewer"})
        if verdict == "reject":
            self.store.transition(
                request_id, (OPEN,), REJECTED, actor=user.name, event=EventKind.REJECTED, reason=f"rejected by {user.name}"
            )
            return self.store.get(request_id)
        return self._proceed(request_id, user.name)

    def _review_digest(self, request: PromoteRequest, actor: str) -> str | None:
        """The challenger's digest now, which the review is bound to. If it is not the one the
        request shows, the files changed under the reviewer: approvals so far are dismissed, the
        request shows the new digest, and this review is refused so it is given on what is there.
        A batch's review is bound to every change's digest (``batches.digest``); its files are
        compared again, change by change, when it applies."""
        if batches.is_batch(request):
            return batches.digest(request)
        if not request.challenger or "digest" not in request.challenger or request.state != OPEN:
            return digest_of(request.challenger)
        try:
            change = changes.from_json(request.change)
            now_seen = self._snapshot(change.challenger(self.registry_for(change.workspace)), change.workspace)
        except RegistryUnavailable:  # the review is kept; apply compares again, and fails while MLflow is down
            return digest_of(request.challenger)
        if identity_of(now_seen) != identity_of(request.challenger) or digest_of(now_seen) == digest_of(request.challenger):
            return digest_of(request.challenger)  # a moved challenger is apply's business (_moved)
        reason = self._challenger_files_reason(request.challenger, now_seen)
        self.store.dismiss_reviews(request.id, reason, actor)
        self.store.update_fields(
            request.id,
            actor="checkpoint",
            event=EventKind.SNAPSHOTS_REFRESHED,
            data={"challenger": now_seen, "reason": reason},
            challenger=now_seen,
        )
        self._want_diff([request.id])
        raise WorkflowError(
            409,
            "INVALID_STATE",
            f"Checkpoint: {reason}; the request now shows the new digest ({short(digest_of(now_seen))}): review it again",
        )

    def refusal(self, user: User | str, request: PromoteRequest) -> str | None:
        """Why ``user`` may not review ``request`` now, or None. A batch: the rule of every one
        of its changes must let them (the first that does not says why)."""
        for part in batches.parts(request):
            why = self.policy.may_review(
                as_user(user),
                part.author,
                part.model_name,
                part.target,
                part.named_reviewers,
                self._review_right(part.workspace),
                part.workspace,
                rollback.verified(part),
            )
            if why is not None:
                return why if part is request else f"{why} (change {part.change.get('kind')} of {part.model_name})"
        return None

    def break_glass(self, request_id: int, user: User | str, reason: str) -> PromoteRequest:
        """An admin applies a request now, without meeting the rule; loudly recorded."""
        user = as_actor(user)
        if not user.is_admin:
            raise WorkflowError(403, "PERMISSION_DENIED", f"{user.name} is not an admin: break-glass is for admins only")
        check_text("reason", reason, COMMENT_MAX, required=True)
        failing = [
            {"check": c.name, "required": c.required, "status": c.status, "reason": c.reason}
            for c in self.check_results(self.store.get(request_id))
            if c.status != checks.PASS
        ]
        data = {"reason": reason, "break_glass": True, **({"failing_checks": failing} if failing else {})}
        request = self.store.get(request_id)
        data |= self._overrides(request)
        # A request waiting for a freeze or its apply_at is approved already: break-glass ends the wait.
        states = (OPEN, FAILED, APPROVED) if request.waiting_for else (OPEN, FAILED)
        if not self.store.transition(
            request_id,
            states,
            APPROVED,
            actor=user.name,
            event=EventKind.BREAK_GLASS,
            data=data,
            reason=f"BREAK-GLASS by {user.name}: {reason}",
            waiting_kind=None,
            waiting_until=None,
            waiting_name=None,
        ):
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}")
        return self.apply(request_id, actor=user.name, forced=True)

    def retry(self, request_id: int, user: User | str) -> PromoteRequest:
        """Try a failed apply again."""
        user = as_actor(user).name
        if not self.store.transition(request_id, (FAILED,), APPROVED, actor=user, event=EventKind.RETRIED):
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}, not failed")
        return self.apply(request_id, actor=user)
