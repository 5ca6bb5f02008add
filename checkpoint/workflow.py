"""The promote request's life: open → approved → applied / failed (retry), or rejected /
withdrawn; back to open with approvals dismissed when the champion or challenger moved.

Apply is exactly-once: the request is claimed with a conditional state change
(approved → applying) that only one worker or replica can win, checked against the
registry (already true? champion moved?), and only then applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from checkpoint import changes
from checkpoint.changes import Change
from checkpoint.governance import Governance
from checkpoint.identity import User
from checkpoint.policy import Policy, RightCheck, Status
from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.store import (
    APPLIED,
    APPLYING,
    APPROVED,
    FAILED,
    OPEN,
    REJECTED,
    WITHDRAWN,
    PromoteRequest,
    Store,
    now,
)  # fmt: skip

log = logging.getLogger(__name__)
TITLE_MAX = 300
DESCRIPTION_MAX = 65536
COMMENT_MAX = 65536
# The widths of the request's text columns (models.py). PostgreSQL refuses a longer value
# or a NUL character with an error deep in the store (a 500, and a 500 to the MLflow client
# means minutes of retries); SQLite would store it. Checked up front: a 400 on both.
USER_MAX, NAME_MAX, TARGET_MAX, VERSION_MAX = 256, 512, 600, 64


class WorkflowError(Exception):
    """A request operation that is not allowed: ``status`` says why (403, 409, 422...)."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def _snapshot(version: Version | None) -> dict | None:
    return version.identity() if version is not None else None


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

    # -- opening ---------------------------------------------------------------------

    def governed(self, change: Change) -> str | None:
        """Why ``change`` needs review, or None. Prompts share the registry and pass."""
        reason = change.governed(self.governance, self.registry)
        if reason and change.kind in ("set_alias", "delete_alias", "set_tag", "delete_tag"):
            try:
                if self.registry.model(change.name).is_prompt:
                    return None
            except RegistryError as exc:
                if not exc.not_found:
                    raise
        return reason

    def open(self, change: Change, author: User | str, title: str = "", description: str = "",
             reviewers: tuple[str, ...] = ()) -> tuple[PromoteRequest, bool]:  # fmt: skip
        """Open a request for ``change`` (or return the open one this author has for it).

        ``reviewers`` names people the author asks; under a rule that lists its reviewers
        they must be among them.
        """
        author = _actor(author).name
        _check_text("model name", change.model_name, NAME_MAX, required=True)
        _check_text("target", change.target(), TARGET_MAX, required=True)
        _check_text("version", change.version or "", VERSION_MAX)
        rule = self.policy.rule_for(change.model_name, change.target())
        reviewers = tuple(dict.fromkeys(r.strip() for r in reviewers if r and r.strip()))
        if rule.reviewers and not rule.groups:
            outside = [r for r in reviewers if r not in rule.reviewers]
            if outside:
                raise WorkflowError(400, "INVALID_PARAMETER_VALUE",
                                    f"{', '.join(outside)} may not review under rule '{rule.name}' "
                                    f"(reviewers: {', '.join(rule.reviewers)})")  # fmt: skip
        if author in reviewers:
            raise WorkflowError(400, "INVALID_PARAMETER_VALUE", "you cannot name yourself as a reviewer")
        title = (title or "").strip() or change.title()
        _check_text("title", title, TITLE_MAX, required=True)
        _check_text("description", description or "", DESCRIPTION_MAX)
        challenger, champion = self._snapshots(change)
        if change.version and challenger is None and change.kind not in ("create_version",):
            raise WorkflowError(
                422, "RESOURCE_DOES_NOT_EXIST", f"'{change.name}' has no version {change.version}: nothing to promote"
            )
        return self.store.open_request(
            author=author,
            dedupe_key=change.dedupe_key(author),
            event_data={"change": change.to_json(), "description": change.describe()},
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
        )

    def _snapshots(self, change: Change) -> tuple[dict | None, dict | None]:
        return _snapshot(change.challenger(self.registry)), _snapshot(change.champion(self.registry))

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
            self.store.update_fields(request_id, actor=user, event="edited", data={"fields": sorted(values)}, **values)
        return self.store.get(request_id)

    def withdraw(self, request_id: int, user: User | str) -> PromoteRequest:
        user = _user(user).name
        request = self.store.get(request_id)
        if user != request.author:
            raise WorkflowError(403, "PERMISSION_DENIED", f"only the author ({request.author}) may withdraw this request")
        if not self.store.transition(request_id, (OPEN, FAILED), WITHDRAWN, actor=user, event="withdrawn"):
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
        if not self.store.add_review(request_id, user.name, verdict, comment, states=(OPEN,)):
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}, not open")
        if verdict == "reject":
            self.store.transition(request_id, (OPEN,), REJECTED, actor=user.name, event="rejected",
                                  reason=f"rejected by {user.name}")  # fmt: skip
            return self.store.get(request_id)
        if self.status(self.store.get(request_id)).met:
            if self.store.transition(request_id, (OPEN,), APPROVED, actor=user.name, event="approved",
                                     reason="approvals meet the policy"):  # fmt: skip
                return self.apply(request_id, actor=user.name)
        return self.store.get(request_id)

    def refusal(self, user: User | str, request: PromoteRequest) -> str | None:
        """Why ``user`` may not review ``request`` now, or None."""
        return self.policy.may_review(_user(user), request.author, request.model_name, request.target,
                                      request.named_reviewers, self.review_right)  # fmt: skip

    def status(self, request: PromoteRequest) -> Status:
        """"2 of 3 approvals", and who is still awaited."""
        approvers = {r.reviewer for r in request.approvals}
        return self.policy.status(request.model_name, request.target, approvers, request.named_reviewers)

    def break_glass(self, request_id: int, user: User | str, reason: str) -> PromoteRequest:
        """An admin applies a request now, without meeting the rule; loudly recorded."""
        user = _actor(user)
        if not user.is_admin:
            raise WorkflowError(403, "PERMISSION_DENIED", f"{user.name} is not an admin: break-glass is for admins only")
        _check_text("reason", reason, COMMENT_MAX, required=True)
        if not self.store.transition(request_id, (OPEN, FAILED), APPROVED, actor=user.name, event="break_glass",
                                     data={"reason": reason, "break_glass": True},
                                     reason=f"BREAK-GLASS by {user.name}: {reason}"):  # fmt: skip
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}")
        return self.apply(request_id, actor=user.name, forced=True)

    def retry(self, request_id: int, user: User | str) -> PromoteRequest:
        """Try a failed apply again."""
        user = _actor(user).name
        if not self.store.transition(request_id, (FAILED,), APPROVED, actor=user, event="retried"):
            raise WorkflowError(409, "INVALID_STATE", f"request #{request_id} is {self.store.get(request_id).state}, not failed")
        return self.apply(request_id, actor=user)

    # -- apply -----------------------------------------------------------------------

    def apply(self, request_id: int, actor: str, forced: bool = False) -> PromoteRequest:
        """Apply an approved request exactly once (``forced``: break-glass, no stale check)."""
        if not self.store.transition(request_id, (APPROVED,), APPLYING, actor=actor, event="applying"):
            return self.store.get(request_id)  # somebody else claimed it
        request = self.store.get(request_id)
        try:
            change = changes.from_json(request.change)
            if change.is_true(self.registry):
                result = f"already true in MLflow, nothing applied: {change.describe()}"
                self.store.transition(request_id, (APPLYING,), APPLIED, actor=actor, event="applied",
                                      data={"already_true": True, "result": result}, apply_result=result,
                                      applied_at=now(), reason="already true")  # fmt: skip
                return self.store.get(request_id)
            challenger, champion = self._snapshots(change)
            moved = None if forced else self._moved(request, challenger, champion)
            if moved:
                self.store.dismiss_reviews(request_id, moved, actor)
                self.store.update_fields(request_id, actor=actor, event="snapshots_refreshed",
                                         data={"challenger": challenger, "champion": champion},
                                         challenger=challenger or {}, champion=champion)  # fmt: skip
                self.store.transition(request_id, (APPLYING,), OPEN, actor=actor, event="reopened",
                                      reason=f"approvals dismissed: {moved}")  # fmt: skip
                return self.store.get(request_id)
            result = change.apply(self.registry)
        except RegistryError as exc:
            log.warning("apply of request #%s failed: %s", request_id, exc)
            self.store.transition(request_id, (APPLYING,), FAILED, actor=actor, event="apply_failed",
                                  data={"error": str(exc)}, apply_result=str(exc),
                                  reason=f"MLflow refused or could not be reached: {exc}")  # fmt: skip
            return self.store.get(request_id)
        except Exception as exc:  # a malformed answer or a bug: never leave the request claimed in 'applying'
            log.exception("apply of request #%s failed unexpectedly", request_id)
            message = f"unexpected error while applying: {type(exc).__name__}: {exc}"
            self.store.transition(request_id, (APPLYING,), FAILED, actor=actor, event="apply_failed",
                                  data={"error": message}, apply_result=message, reason=message)  # fmt: skip
            return self.store.get(request_id)
        # A break-glass keeps its loud reason on the request; a normal apply says "applied".
        self.store.transition(request_id, (APPLYING,), APPLIED, actor=actor, event="applied",
                              data={"result": result, "break_glass": forced}, apply_result=result, applied_at=now(),
                              reason=None if forced else "applied")  # fmt: skip
        return self.store.get(request_id)

    @staticmethod
    def _moved(request: PromoteRequest, challenger: dict | None, champion: dict | None) -> str | None:
        if _identity(request.champion) != _identity(champion):
            before = f"v{request.champion['version']}" if request.champion else "none"
            after = f"v{champion['version']}" if champion else "none"
            return f"the champion moved since the reviews ({before} → {after})"
        if request.challenger and _identity(request.challenger) != _identity(challenger):
            return "the challenger changed since the reviews"
        return None


def _check_text(name: str, value: str, limit: int, required: bool = False) -> None:
    if not isinstance(value, str):
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} must be a string")
    if required and not value.strip():
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} must not be empty")
    if len(value) > limit:
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} is {len(value)} characters; at most {limit}")
    if "\x00" in value:
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} must not contain NUL characters")
