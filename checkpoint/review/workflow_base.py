"""What every part of the Workflow shares: its collaborators (the fields), the errors it raises,
the limits it checks text against, and the snapshot of a version a reviewer sees.

The Workflow is composed like the Store (mixins over these fields, so callers keep one object):
``WorkflowBase`` here, ``Checking`` (``checking.py``: a request's checks and the HTTP check
payload), ``Applying`` (``applying.py``: approved → applied once, and noticing what moved) and
``Workflow`` itself (``workflow.py``: opening, editing and reviewing requests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from checkpoint.clock import SYSTEM, Clock
from checkpoint.errors import CheckpointError
from checkpoint.identity import User
from checkpoint.registry import Registry, Version
from checkpoint.review import content
from checkpoint.review.governance import Governance
from checkpoint.review.policy import Policy, RightCheck
from checkpoint.storage.entities import PromoteRequest
from checkpoint.storage.store import Store

TITLE_MAX = 300
DESCRIPTION_MAX = 65536
COMMENT_MAX = 65536
# A request without a name behind it: refused, whatever the channel (each says how to give one).
NAMELESS = (
    "a promote request needs the name of who asks: sign in (with CHECKPOINT_AUTH=none, send your name as the "
    "Basic-auth user name; the password is not checked)"
)
# The widths of the request's text columns (models.py). PostgreSQL refuses a longer value
# or a NUL character with an error deep in the store (a 500, and a 500 to the MLflow client
# means minutes of retries); SQLite would store it. Checked up front: a 400 on both.
USER_MAX, NAME_MAX, TARGET_MAX, VERSION_MAX = 256, 512, 600, 64


class WorkflowError(CheckpointError):
    """A request operation that is not allowed: ``status`` says why (403, 409, 422...)."""


def digest_of(snapshot: dict | None) -> str | None:
    return (snapshot or {}).get("digest")


def short(digest: str | None) -> str:
    return digest[:12] if digest else "unreadable"


def identity_of(snapshot: dict | None) -> tuple | None:
    return (snapshot["name"], snapshot["version"], snapshot["run_id"], snapshot["source"]) if snapshot else None


def as_user(user: User | str) -> User:
    return user if isinstance(user, User) else User(user)


def as_actor(user: User | str) -> User:
    """The caller of an operation that records their name (author, reviewer, commenter)."""
    user = as_user(user)
    check_text("user name", user.name, USER_MAX, required=True)
    return user


def check_text(name: str, value: str, limit: int, required: bool = False) -> None:
    if not isinstance(value, str):
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} must be a string")
    if required and not value.strip():
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} must not be empty")
    if len(value) > limit:
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} is {len(value)} characters; at most {limit}")
    if "\x00" in value:
        raise WorkflowError(400, "INVALID_PARAMETER_VALUE", f"{name} must not contain NUL characters")


@dataclass
class WorkflowBase:
    """The Workflow's collaborators and settings (``services.py`` builds it with these)."""

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
    # The time stamps and approval ages are read from (checkpoint/clock.py; tests move one).
    clock: Clock = SYSTEM
    # Asks for new reads of these requests' diffs (review/diff_snapshots.py: when a request opens
    # and whenever a side moves); never raises.
    diff_wanted: Callable[[Iterable[int]], object] | None = None
    # A request's behavioural diff as its page shows it (review/behaviour/diffs.py; None: not a
    # model version's request), read by the behaviour checks; asks for it when none is stored.
    behaviour_of: Callable[[PromoteRequest], dict | None] | None = None

    def _want_diff(self, request_ids: Iterable[int]) -> None:
        if self.diff_wanted is not None:
            self.diff_wanted(list(request_ids))

    def registry_for(self, workspace: str) -> Registry:
        """The registry adapter acting in MLflow ``workspace`` (a change's or a request's): every
        read and write about a change goes there, never to the default workspace by omission."""
        return self.registry.in_workspace(workspace)

    def _review_right(self, workspace: str) -> RightCheck | None:
        """The MANAGE check (``mlflow`` mode), asked in MLflow ``workspace`` (grants are per workspace)."""
        right = self.review_right
        if right is None or not workspace:
            return right
        return lambda u, model: right(u, model, workspace)  # type: ignore[call-arg]

    def _snapshot(self, version: Version | None, workspace: str = "") -> dict | None:
        """What a reviewer sees of a version: who it is, and the digest of its files (read in
        the version's MLflow workspace)."""
        if version is None:
            return None
        registry = self.registry_for(workspace)
        return {**version.identity(), **content.digest(registry, version, self.digest_max_bytes).to_json()}
