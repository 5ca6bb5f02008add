"""The promote request's life: open → approved → applied / failed (retry), or rejected /
withdrawn; back to open with approvals dismissed when the champion or challenger moved.

Apply is exactly-once: the request is claimed with a conditional state change
(approved → applying) that only one worker or replica can win, checked against the
registry (already true? champion moved?), and only then applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from checkpoint.errors import CheckpointError
from checkpoint.identity import User
from checkpoint.registry import Registry, RegistryError, RegistryUnavailable, Version
from checkpoint.review import changes, checks, content
from checkpoint.review.changes import Change
from checkpoint.review.governance import Governance
from checkpoint.review.policy import Policy, RightCheck, Status
from checkpoint.storage.entities import (
    APPLIED,
    APPLYING,
    APPROVED,
    FAILED,
    OPEN,
    REJECTED,
    WITHDRAWN,
    CheckResult,
    EventKind,
    PromoteRequest,
    now,
)
from checkpoint.storage.entities import CHECK_QUEUED as QUEUED
from checkpoint.storage.store import Store

log = logging.getLogger("checkpoint.workflow")  # the name operators filter the JSON logs on
TITLE_MAX = 300
DESCRIPTION_MAX = 65536
COMMENT_MAX = 65536
# The widths of the request's text columns (models.py). PostgreSQL refuses a longer value
# or a NUL character with an error deep in the store (a 500, and a 500 to the MLflow client
# means minutes of retries); SQLite would store it. Checked up front: a 400 on both.
USER_MAX, NAME_MAX, TARGET_MAX, VERSION_MAX = 256, 512, 600, 64


class WorkflowError(CheckpointError):
    """A request operation that is not allowed: ``status`` says why (403, 409, 422...)."""


def _digest(snapshot: dict | None) -> str | None:
    return (snapshot or {}).get("digest")


def short(digest: str | None) -> str:
    return digest[:12] if digest else "unreadable"


def _is_prompt_version(version: Version) -> bool:
    """A version MLflow registered as a prompt version (its source is a placeholder, no files)."""
    return version.tags.get(changes.PROMPT_TAG, "").lower() == "true"


def _identity(snapshot: dict | None) -> tuple | None:
    return (snapshot["name"], snapshot["version"], snapshot["run_id"], snapshot["source"]) if snapshot else None


def _user(user: User | str) -> User:
    return user if isinstance(user, User) else User(user)


def _actor(user: User | str) -> User:
    """The caller of an operation that records their name (author, reviewer, commenter)."""
    user = _user(user)
    _check_text("user name", user.name, USER_MAX, required=True)
    return user


@dataclass
class Workflow:
    store: Store
    registry: Registry
    governance: Governance
    policy: Policy
    # In ``mlflow`` identity mode: may this user approve for this model (MANAGE in MLflow)?
    review_right: RightCheck | None = None
    # Called once HTTP checks were queued (app.py: wakes the background thread that runs them).
    checks_queued: Callable[[], object] | None = None
    # Checkpoint's public address, for the links in an HTTP check's payload.
    public_url: str | None = None
    # How many bytes of a version's files its content digest hashes (content.py).
    digest_max_bytes: int = 64 * 1024 * 1024

    # -- opening ---------------------------------------------------------------------

    def registry_for(self, workspace: str) -> Registry:
        """The registry adapter acting in MLflow ``workspace`` (a change's or a request's): every
        read and write about a change goes there, never to the default workspace by omission."""
        return self.registry.in_workspace(workspace)

    def governed(self, change: Change) -> str | None:
        """Why ``change`` needs review, or None. Prompts share the registry and pass."""
        registry = self.registry_for(change.workspace)
        reason = change.governed(self.governance, registry)
        if reason and self._prompt_exempt(change):
            return None
        return reason

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
        self, change: Change, author: User | str, title: str = "", description: str = "", reviewers: tuple[str, ...] = ()
    ) -> tuple[PromoteRequest, bool]:
        """Open a request for ``change`` (or return the open one this author has for it).

        ``reviewers`` names people the author asks: it only adds them to the awaited list, so
        each must be able to approve under the rule on their own (a 400 here, not a dead end).
        A moving ``models:`` source is pinned to the version it names now.
        """
        author = _actor(author).name
        _check_text("model name", change.model_name, NAME_MAX, required=True)
        _check_text("target", change.target(), TARGET_MAX, required=True)
        _check_text("version", change.version or "", VERSION_MAX)
        try:
            change = change.resolve(self.registry_for(change.workspace))
        except changes.ChangeError as exc:
            raise WorkflowError(400, exc.error_code, str(exc)) from exc
        rule = self.policy.rule_for(change.model_name, change.target(), change.workspace)
        reviewers = tuple(dict.fromkeys(r.strip() for r in reviewers if r and r.strip()))
        if author in reviewers:
            raise WorkflowError(400, "INVALID_PARAMETER_VALUE", "you cannot name yourself as a reviewer")
        self._check_named(rule, change.model_name, reviewers, change.workspace)
        title = (title or "").strip() or change.title()
        _check_text("title", title, TITLE_MAX, required=True)
        _check_text("description", description or "", DESCRIPTION_MAX)
        challenger, champion = self._snapshots(change)
        if change.version and challenger is None and change.kind not in ("create_version",):
            raise WorkflowError(
                422, "RESOURCE_DOES_NOT_EXIST", f"'{change.name}' has no version {change.version}: nothing to promote"
            )
        request, created = self.store.open_request(
            author=author,
            dedupe_key=change.dedupe_key(author),
            event_data={"change": change.to_json(), "description": change.describe(), "title": title},
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
        )
        if created and rule.checks:
            self._run_checks_safely(request.id, "open", author)
            request = self.store.get(request.id)
        return request, created

    def artifact_refusal(self, write: content.ArtifactWrite) -> content.Refusal | None:
        """Why an artifact write or delete may not pass: it reaches a registered version's files
        (looked up in the MLflow workspace the call acts in)."""
        return content.refusal(self.registry_for(write.workspace), write)

    def _snapshot(self, version: Version | None, workspace: str = "") -> dict | None:
        """What a reviewer sees of a version: who it is, and the digest of its files (read in
        the version's MLflow workspace)."""
        if version is None:
            return None
        registry = self.registry_for(workspace)
        return {**version.identity(), **content.digest(registry, version, self.digest_max_bytes).to_json()}

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
        if not seen or not seen.get("digest") or _identity(seen) != _identity(champion):
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

    def refresh_checks(self, model: str, target: str, actor: str, skip: int | None = None, workspace: str = "") -> None:
        """The champion of ``target`` moved (an apply, an outside change): checks that compare
        against it are re-run on the target's other open requests (in the same MLflow workspace)."""
        try:
            items, _ = self.store.list_requests(state=OPEN, model=model, target=target, limit=50, workspace=workspace)
        except Exception:  # the apply that called this is recorded already
            log.exception("could not list the open requests for %s of %s to refresh their checks", target, model)
            return
        for item in items:
            if item.id != skip and self.check_specs(item):
                self._run_checks_safely(item.id, "refresh", actor)

    # -- the author's edits ----------------------------------------------------------

    def edit(self, request_id: int, user: User | str, title: str | None, description: str | None) -> PromoteRequest:
        user = _user(user).name
        request = self.store.get(request_id)
        if user != request.author:
            raise WorkflowError(403, "PERMISSION_DENIED", f"only the author ({request.author}) may edit this request")
        if request.state != OPEN:
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {request.state}; only open ones can be edited")
        values = {}
        if title is not None:
            _check_text("title", title.strip(), TITLE_MAX, required=True)
            values["title"] = title.strip()
        if description is not None:
            _check_text("description", description, DESCRIPTION_MAX)
            values["description"] = description
        if values:
            # The new title goes into the log too, so webhook bodies built from events never change.
            data = {"fields": sorted(values), **({"title": values["title"]} if "title" in values else {})}
            self.store.update_fields(request_id, actor=user, event=EventKind.EDITED, data=data, **values)
        return self.store.get(request_id)

    def withdraw(self, request_id: int, user: User | str) -> PromoteRequest:
        user = _user(user).name
        request = self.store.get(request_id)
        if user != request.author:
            raise WorkflowError(403, "PERMISSION_DENIED", f"only the author ({request.author}) may withdraw this request")
        if not self.store.transition(request_id, (OPEN, FAILED), WITHDRAWN, actor=user, event=EventKind.WITHDRAWN):
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}")
        return self.store.get(request_id)

    def comment(self, request_id: int, user: User | str, body: str) -> PromoteRequest:
        _check_text("body", body.strip(), COMMENT_MAX, required=True)
        self.store.add_comment(request_id, _actor(user).name, body)
        return self.store.get(request_id)

    # -- reviews ---------------------------------------------------------------------

    def review(self, request_id: int, user: User | str, verdict: str, comment: str = "") -> PromoteRequest:
        """Approve or reject; the approval that meets the policy applies the change."""
        if verdict not in ("approve", "reject"):
            raise WorkflowError(400, "INVALID_PARAMETER_VALUE", "verdict must be 'approve' or 'reject'")
        _check_text("comment", comment, COMMENT_MAX)
        user = _actor(user)
        request = self.store.get(request_id)
        refusal = self.refusal(user, request)
        if refusal:
            raise WorkflowError(403, "PERMISSION_DENIED", refusal)
        digest = self._review_digest(request, user.name)
        if not self.store.add_review(request_id, user.name, verdict, comment, states=(OPEN,), digest=digest):
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}, not open")
        if verdict == "reject":
            self.store.transition(
                request_id, (OPEN,), REJECTED, actor=user.name, event=EventKind.REJECTED, reason=f"rejected by {user.name}"
            )
            return self.store.get(request_id)
        return self._proceed(request_id, user.name)

    def _review_digest(self, request: PromoteRequest, actor: str) -> str | None:
        """The challenger's digest now, which the review is bound to. If it is not the one the
        request shows, the files changed under the reviewer: approvals so far are dismissed, the
        request shows the new digest, and this review is refused so it is given on what is there."""
        if not request.challenger or "digest" not in request.challenger or request.state != OPEN:
            return _digest(request.challenger)
        try:
            change = changes.from_json(request.change)
            now_seen = self._snapshot(change.challenger(self.registry_for(change.workspace)), change.workspace)
        except RegistryUnavailable:  # the review is kept; apply compares again, and fails while MLflow is down
            return _digest(request.challenger)
        if _identity(now_seen) != _identity(request.challenger) or _digest(now_seen) == _digest(request.challenger):
            return _digest(request.challenger)  # a moved challenger is apply's business (_moved)
        reason = self._challenger_files_reason(request.challenger, now_seen)
        self.store.dismiss_reviews(request.id, reason, actor)
        self.store.update_fields(
            request.id,
            actor="checkpoint",
            event=EventKind.SNAPSHOTS_REFRESHED,
            data={"challenger": now_seen, "reason": reason},
            challenger=now_seen,
        )
        raise WorkflowError(
            409,
            "INVALID_STATE",
            f"Checkpoint: {reason}; the request now shows the new digest ({short(_digest(now_seen))}): review it again",
        )

    @staticmethod
    def _challenger_files_reason(before: dict, after: dict | None) -> str:
        return (
            f"the challenger's files changed since the reviews (v{before['version']}: digest "
            f"{short(_digest(before))} → {short(_digest(after))})"
        )

    def _proceed(self, request_id: int, actor: str) -> PromoteRequest:
        """Open → approved → applied once approvals meet the rule and required checks pass
        (after a review, or a check turning to pass); the conditional transition makes it once."""
        request = self.store.get(request_id)
        if request.state == OPEN and self.status(request).ready:
            reason = "approvals meet the policy" + ("; required checks pass" if self.check_specs(request) else "")
            if self.store.transition(request_id, (OPEN,), APPROVED, actor=actor, event=EventKind.APPROVED, reason=reason):
                return self.apply(request_id, actor=actor)
        return self.store.get(request_id)

    def refusal(self, user: User | str, request: PromoteRequest) -> str | None:
        """Why ``user`` may not review ``request`` now, or None."""
        return self.policy.may_review(
            _user(user),
            request.author,
            request.model_name,
            request.target,
            request.named_reviewers,
            self._review_right(request.workspace),
            request.workspace,
        )

    def _review_right(self, workspace: str) -> RightCheck | None:
        """The MANAGE check (``mlflow`` mode), asked in MLflow ``workspace`` (grants are per workspace)."""
        right = self.review_right
        if right is None or not workspace:
            return right
        return lambda u, model: right(u, model, workspace)  # type: ignore[call-arg]

    def status(self, request: PromoteRequest, results: list[CheckResult] | None = None) -> Status:
        """ "2 of 3 approvals", who is still awaited, and the required checks not passing
        (``results``: the request's :meth:`check_results`, when the caller has them already)."""
        approvers = {r.reviewer for r in request.approvals}
        status = self.policy.status(request.model_name, request.target, approvers, request.named_reviewers, request.workspace)
        results = self.check_results(request) if results is None else results
        blocked = tuple(c.name for c in results if c.required and c.status != checks.PASS)
        return replace(status, blocked_by=blocked) if blocked else status

    def break_glass(self, request_id: int, user: User | str, reason: str) -> PromoteRequest:
        """An admin applies a request now, without meeting the rule; loudly recorded."""
        user = _actor(user)
        if not user.is_admin:
            raise WorkflowError(403, "PERMISSION_DENIED", f"{user.name} is not an admin: break-glass is for admins only")
        _check_text("reason", reason, COMMENT_MAX, required=True)
        failing = [
            {"check": c.name, "required": c.required, "status": c.status, "reason": c.reason}
            for c in self.check_results(self.store.get(request_id))
            if c.status != checks.PASS
        ]
        data = {"reason": reason, "break_glass": True, **({"failing_checks": failing} if failing else {})}
        if not self.store.transition(
            request_id,
            (OPEN, FAILED),
            APPROVED,
            actor=user.name,
            event=EventKind.BREAK_GLASS,
            data=data,
            reason=f"BREAK-GLASS by {user.name}: {reason}",
        ):
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}")
        return self.apply(request_id, actor=user.name, forced=True)

    def retry(self, request_id: int, user: User | str) -> PromoteRequest:
        """Try a failed apply again."""
        user = _actor(user).name
        if not self.store.transition(request_id, (FAILED,), APPROVED, actor=user, event=EventKind.RETRIED):
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}, not failed")
        return self.apply(request_id, actor=user)

    # -- apply -----------------------------------------------------------------------

    def apply(self, request_id: int, actor: str, forced: bool = False) -> PromoteRequest:
        """Apply an approved request exactly once (``forced``: break-glass, no stale check)."""
        if not self.store.transition(request_id, (APPROVED,), APPLYING, actor=actor, event=EventKind.APPLYING):
            return self.store.get(request_id)  # somebody else claimed it
        request = self.store.get(request_id)
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
                    applied_at=now(),
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
                    reason="not applied: " + "; ".join(_check_line(c) for c in blocked),
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
            data={"result": result, "break_glass": forced},
            apply_result=result,
            applied_at=now(),
            reason=None if forced else "applied",
        )
        self.refresh_checks(request.model_name, request.target, actor, skip=request_id, workspace=request.workspace)
        return self.store.get(request_id)

    # -- checks ----------------------------------------------------------------------

    def check_specs(self, request: PromoteRequest) -> tuple[checks.Check, ...]:
        """The checks the request's rule declares now (the policy file may have changed)."""
        return self.policy.rule_for(request.model_name, request.target, request.workspace).checks

    def check_results(self, request: PromoteRequest, stored: list[CheckResult] | None = None) -> list[CheckResult]:
        """Each declared check with its latest result; one never evaluated shows as pending."""
        specs = self.check_specs(request)
        if not specs:
            return []
        if stored is None:
            stored = self.store.check_results([request.id])[request.id]
        by_name = {r.name: r for r in stored}
        out = []
        for spec in specs:
            found = by_name.get(spec.name)
            if found is None or found.kind != spec.kind:
                found = CheckResult(
                    request.id, spec.name, spec.kind, spec.required, checks.PENDING, "not evaluated yet", "", None
                )
            elif found.required != spec.required:
                found = replace(found, required=spec.required)
            out.append(found)
        return out

    def checks_of(self, requests: list[PromoteRequest]) -> dict[int, list[CheckResult]]:
        """:meth:`check_results` for a page of requests, read in one query."""
        wanted = [r.id for r in requests if self.check_specs(r)]
        stored = self.store.check_results(wanted) if wanted else {}
        return {r.id: self.check_results(r, stored[r.id]) if r.id in stored else [] for r in requests}

    def rerun_checks(self, request_id: int, user: User | str) -> PromoteRequest:
        """Evaluate the request's checks again (someone fixed a tag, the receiver is back...)."""
        user = _actor(user)
        if user.anonymous:
            raise WorkflowError(403, "PERMISSION_DENIED", "sign in (or pick a name) to re-run checks")
        request = self.store.get(request_id)
        if request.state not in (OPEN, FAILED):
            raise WorkflowError(
                409, "INVALID_STATE", f"request #{request_id} is {request.state}; checks run on open or failed requests"
            )
        self._evaluate(request, "manual", user.name)
        return self._proceed(request_id, user.name)

    def _run_checks_safely(self, request_id: int, trigger: str, actor: str) -> None:
        """Evaluate checks where a failure to record them must not undo the caller's work
        (the request opened; its snapshots were refreshed): missing results show as pending."""
        try:
            self._evaluate(self.store.get(request_id), trigger, actor)
        except Exception:  # logged; the checks stay pending and block, and can be re-run
            log.exception("checks of request #%s (%s) could not be recorded", request_id, trigger)

    def _evaluate(self, request: PromoteRequest, trigger: str, actor: str, required_local: bool = False) -> None:
        """One round: local checks now, HTTP checks queued for the background thread
        (``required_local``: only the required local ones, right before apply)."""
        specs = self.check_specs(request)
        if not specs:
            return
        subject = checks.Subject(request, self.registry_for(request.workspace))
        results, queued = [], False
        for spec in specs:
            if not spec.local:
                if required_local:
                    continue
                results.append(
                    CheckResult(request.id, spec.name, spec.kind, spec.required, checks.PENDING, QUEUED, trigger, now())
                )
                queued = True
            elif spec.required or not required_local:
                result = spec.evaluate(subject)
                results.append(
                    CheckResult(request.id, spec.name, spec.kind, spec.required, result.status, result.reason, trigger, now())
                )
        self.store.record_checks(request.id, results, keep=[s.name for s in specs], actor=actor)
        if queued and self.checks_queued is not None:
            self.checks_queued()

    def _checks_before_apply(self, request: PromoteRequest, actor: str) -> list[CheckResult]:
        """Re-evaluate the required local checks; the required checks not passing, if any."""
        if not self.check_specs(request):
            return []
        self._evaluate(request, "apply", actor, required_local=True)
        return [c for c in self.check_results(request) if c.required and c.status != checks.PASS]

    def run_pending_checks(self, limit: int = 20) -> int:
        """The background task: evaluate queued HTTP checks, each claimed by one worker."""
        lease_before = now() - timedelta(seconds=checks.HTTP_LEASE_SECONDS)
        done = 0
        for pending in self.store.due_checks("http", lease_before, limit):
            claimed = self.store.claim_check(pending.request_id, pending.name, lease_before)
            if claimed is None:
                continue  # another worker has it
            request = self.store.get(pending.request_id)
            specs = self.check_specs(request)
            spec = next((s for s in specs if s.name == pending.name and isinstance(s, checks.HttpCheck)), None)
            if spec is None:
                result = checks.Result(checks.ERROR, "this HTTP check is no longer in the request's rule")
            else:
                result = checks.call_http(spec, self.http_payload(request, spec))
            if self.store.settle_check(
                pending.request_id, pending.name, claimed, result.status, result.reason, actor="checkpoint"
            ):
                done += 1
                self._proceed(pending.request_id, "checkpoint")
        return done

    def http_payload(self, request: PromoteRequest, spec: checks.Check) -> dict:
        """What an HTTP check receives: the request as the API shows it, plus a diff summary."""
        status = self.status(request)
        rule = self.policy.rule_for(request.model_name, request.target, request.workspace)
        base = (self.public_url or "").rstrip("/")
        subject = checks.Subject(request, self.registry_for(request.workspace))
        try:
            summary: dict | None = checks.diff_summary(subject)
            diff_error = None
        except Exception as exc:  # noqa: BLE001 - the summary is a courtesy; the check still runs
            summary, diff_error = None, f"{type(exc).__name__}: {exc}"
        return {
            "check": {"name": spec.name, "kind": spec.kind, "required": spec.required},
            "request": {
                "id": request.id,
                "url": f"{base}/checkpoint/requests/{request.id}" if base else None,
                "kind": request.kind,
                "model": request.model_name,
                "workspace": request.workspace or "default",
                "version": request.version,
                "target": request.target,
                "change": request.change,
                "title": request.title,
                "description": request.description,
                "author": request.author,
                "state": request.state,
                "state_reason": request.state_reason,
                "challenger": request.challenger or None,
                "champion": request.champion,
                "approvals": {
                    "count": status.count,
                    "required": status.required,
                    "approvers": list(status.approvers),
                    "awaited": list(status.awaited),
                    "met": status.met,
                },
                "named_reviewers": list(request.named_reviewers),
                "rule": {"name": rule.name, "description": rule.describe()},
                "created_at": request.created_at.isoformat(),
                "updated_at": request.updated_at.isoformat(),
            },
            "diff": summary,
            **({"diff_error": diff_error} if diff_error else {}),
        }

    @staticmethod
    def _moved(request: PromoteRequest, challenger: dict | None, champion: dict | None) -> str | None:
        if _identity(request.champion) != _identity(champion):
            before = f"v{request.champion['version']}" if request.champion else "none"
            after = f"v{champion['version']}" if champion else "none"
            return f"the champion moved since the reviews ({before} → {after})"
        if request.challenger and _identity(request.challenger) != _identity(challenger):
            return "the challenger changed since the reviews"
        if request.challenger and "digest" in request.challenger:
            current = _digest(challenger)
            if current != _digest(request.challenger) or any(r.digest and r.digest != current for r in request.approvals):
                return Workflow._challenger_files_reason(request.challenger, challenger)
        return None


def _check_line(result: CheckResult) -> str:
    return f"required check {result.name} is {result.status}: {result.reason}"


def _check_text(name: str, value: str, limit: int, required: bool = False) -> None:
    if not isinstance(value, str):
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} must be a string")
    if required and not value.strip():
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} must not be empty")
    if len(value) > limit:
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} is {len(value)} characters; at most {limit}")
    if "\x00" in value:
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} must not contain NUL characters")
