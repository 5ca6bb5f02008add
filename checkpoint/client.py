"""A small Python client for pipelines: open a promote request, wait for its decision,
and ask which version holds a stage or alias.

    from checkpoint.client import CheckpointClient
    cp = CheckpointClient("http://checkpoint:5000")          # or CHECKPOINT_URL
    req = cp.promote("fraud-detector", "7", alias="champion", title="Retrained on May data")
    final = cp.wait(req["id"])                                # applied, rejected, withdrawn or failed
    cp.which("fraud-detector", alias="champion")             # -> "7"
    cp.which("fraud-detector", alias="champion", at="2026-11-01T12:00Z")  # what held it then
    cp.set_status("ci/eval", "success", request_id=req["id"], target_url="https://ci.example/run/1")
    cp.review(req["id"], "approve", "Looks right")           # a reviewer, with their own credentials
    cp.plan({"models": {"fraud-detector": {"aliases": {"champion": 7}}}})  # drift from a desired state
    cp.batch([change1, change2], title="Move both")           # one request, applied all or nothing

Credentials: a Checkpoint API token (``token=`` or ``CHECKPOINT_TOKEN``, sent as Bearer; see the
README's "API tokens"), else the MLflow client's: ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``
(Basic) or ``MLFLOW_TRACKING_TOKEN`` (Bearer). ``login_only=True`` ignores ``CHECKPOINT_TOKEN``:
managing tokens needs a real login.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

TERMINAL = ("applied", "rejected", "withdrawn", "failed")


class CheckpointAPIError(Exception):
    """Checkpoint answered with an error (``status``, ``error_code``, ``message``)."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message


class NotKnown(Exception):
    """Checkpoint has no record of what held the target at that time (``answer["reason"]`` says why)."""

    def __init__(self, answer: dict) -> None:
        super().__init__(answer.get("reason") or "Checkpoint has no record of that time")
        self.answer = answer


class WaitTimeout(Exception):
    """The request was still undecided when the wait ran out."""

    def __init__(self, request: dict) -> None:
        super().__init__(f"promote request #{request['id']} is still {request['state']}")
        self.request = request


class CheckpointClient:
    def __init__(
        self,
        url: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        login_only: bool = False,
    ) -> None:
        url = url or os.environ.get("CHECKPOINT_URL") or os.environ.get("MLFLOW_TRACKING_URI")
        if not url or not url.startswith(("http://", "https://")):
            raise ValueError("give Checkpoint's address (url=... or CHECKPOINT_URL), e.g. http://127.0.0.1:5000")
        self.base = url.rstrip("/") + "/checkpoint/api/v1"
        self.timeout = timeout
        self.session = requests.Session()
        username = username or os.environ.get("MLFLOW_TRACKING_USERNAME")
        if not login_only:
            token = token or os.environ.get("CHECKPOINT_TOKEN")
        token = token or os.environ.get("MLFLOW_TRACKING_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif username:
            self.session.auth = (username, password or os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))

    def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        answer = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
        try:
            data = answer.json()
        except ValueError:
            data = None
        if answer.status_code >= 400:
            if isinstance(data, dict) and "error_code" in data:
                raise CheckpointAPIError(answer.status_code, data["error_code"], data.get("message", ""))
            raise CheckpointAPIError(answer.status_code, f"HTTP_{answer.status_code}", answer.text[:500])
        if not isinstance(data, dict):
            raise CheckpointAPIError(answer.status_code, "BAD_RESPONSE", f"not a JSON object: {answer.text[:200]}")
        return data

    def request(self, change: dict, title: str = "", description: str = "", apply_at: str | None = None) -> dict:
        """Open a request for any change (the same fields as the MLflow REST call, plus ``kind``,
        and ``workspace`` for an MLflow workspace other than the default one). ``apply_at`` (ISO
        with an offset): once approved, it applies at that time, not before."""
        body: dict = {"change": change, "title": title, "description": description}
        if apply_at is not None:
            body["apply_at"] = apply_at
        return self._call("POST", "/requests", json=body)

    def batch(self, changes: list[dict], title: str = "", description: str = "", reviewers: list[str] | None = None) -> dict:
        """Open one request holding several changes (each as :meth:`request` takes one), reviewed
        once and applied in order, all or nothing. The same changes again return the open one."""
        body: dict = {"changes": changes, "title": title, "description": description}
        if reviewers:
            body["reviewers"] = reviewers
        return self._call("POST", "/requests", json=body)

    def promote(
        self,
        model: str,
        version: str | int,
        *,
        stage: str | None = None,
        alias: str | None = None,
        archive_existing: bool = False,
        title: str = "",
        description: str = "",
        workspace: str | None = None,
        apply_at: str | None = None,
    ) -> dict:
        """Ask to move ``version`` of ``model`` (in MLflow ``workspace``) to a stage or an alias
        (at ``apply_at``, ISO with an offset, when given)."""
        if bool(stage) == bool(alias):
            raise ValueError("give exactly one of stage= or alias=")
        if stage:
            change = {
                "kind": "transition",
                "name": model,
                "version": str(version),
                "stage": stage,
                "archive_existing_versions": archive_existing,
            }
        else:
            change = {"kind": "set_alias", "name": model, "version": str(version), "alias": alias}
        if workspace:
            change["workspace"] = workspace
        return self.request(change, title, description, apply_at)

    def copy(
        self,
        model: str,
        version: str | int,
        into: str,
        *,
        title: str = "",
        description: str = "",
        workspace: str | None = None,
        apply_at: str | None = None,
    ) -> dict:
        """Ask to copy ``version`` of ``model`` into the registered model ``into`` (e.g.
        ``prod.<model>``), as MLflow's ``copy_model_version`` would."""
        change: dict = {"kind": "create_version", "name": into, "source": f"models:/{model}/{version}"}
        if workspace:
            change["workspace"] = workspace
        return self.request(change, title, description, apply_at)

    def rollback(
        self,
        model: str,
        *,
        stage: str | None = None,
        alias: str | None = None,
        to: str | int | None = None,
        title: str = "",
        description: str = "",
        workspace: str | None = None,
    ) -> dict:
        """Ask to put back an earlier holder of ``model``'s stage or alias: ``to``, or (None) the
        previous holder. Checkpoint chooses and checks the version from its log; the request (a
        rollback record under ``"rollback"``) may already be applied under a fast-path rule."""
        if bool(stage) == bool(alias):
            raise ValueError("give exactly one of stage= or alias=")
        body: dict = {
            "target": f"stage:{stage}" if stage else f"alias:{alias}",
            "to": None if to is None else str(to),
            "title": title,
            "description": description,
        }
        if workspace:
            body["workspace"] = workspace
        return self._call("POST", f"/models/{quote(model, safe='')}/rollback", json=body)

    def set_status(
        self,
        context: str,
        state: str,
        *,
        request_id: int | None = None,
        model: str | None = None,
        version: str | int | None = None,
        workspace: str | None = None,
        target_url: str | None = None,
        description: str = "",
    ) -> dict:
        """Post a CI status (``state``: pending, success, failure or error) on request
        ``request_id``, or on ``version`` of ``model`` (then it counts for every request promoting
        that version with its files as they are now). ``{"status": ..., "request": ...}``."""
        if (request_id is None) == (model is None) or (model is None) != (version is None):
            raise ValueError("give request_id=, or model= and version=")
        body: dict = {"context": context, "state": state, "description": description}
        if target_url:
            body["target_url"] = target_url
        if request_id is not None:
            return self._call("POST", f"/requests/{int(request_id)}/statuses", json=body)
        if workspace:
            body["workspace"] = workspace
        path = f"/models/{quote(str(model), safe='')}/versions/{quote(str(version), safe='')}/statuses"
        return self._call("POST", path, json=body)

    def review(self, request_id: int, verdict: str, comment: str = "") -> dict:
        """Approve or reject request ``request_id`` (``verdict``: ``approve`` or ``reject``) as the
        signed-in user; with a token, it needs the ``review`` scope. Answers the request."""
        if verdict not in ("approve", "reject"):
            raise ValueError("verdict is 'approve' or 'reject'")
        return self._call("POST", f"/requests/{int(request_id)}/reviews", json={"verdict": verdict, "comment": comment})

    def statuses(self, request_id: int) -> dict:
        """A request's statuses: ``statuses`` (latest per context), ``blocked_by_statuses``, ``history``."""
        return self._call("GET", f"/requests/{int(request_id)}/statuses")

    def get(self, request_id: int) -> dict:
        return self._call("GET", f"/requests/{int(request_id)}")

    def requests(
        self,
        *,
        awaiting_me: bool = False,
        mine: bool = False,
        state: str | None = None,
        model: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict:
        """A page of requests, newest first: ``requests`` and ``next_cursor``. ``awaiting_me``: those
        waiting for your review; ``mine``: those you opened (you: the token's owner with a token)."""
        params: dict[str, str | int] = {"limit": limit}
        if awaiting_me:
            params["awaiting"] = "me"
        if mine:
            params["author"] = "me"
        for key, value in (("state", state), ("model", model), ("cursor", cursor)):
            if value:
                params[key] = value
        return self._call("GET", "/requests", params=params)

    def wait(
        self,
        request_id: int,
        timeout: float = 3600.0,
        interval: float = 5.0,
        on_progress: Callable[[dict], None] | None = None,
    ) -> dict:
        """Poll until the request is decided (applied, rejected, withdrawn or failed).
        ``on_progress`` is called with the request whenever where it stands changes (its state,
        approvals or blocking checks; at most once a poll), the first poll included."""
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            current = self.get(request_id)
            if current["state"] in TERMINAL:
                return current
            standing = progress_key(current)
            if on_progress is not None and standing != seen:
                on_progress(current)
            seen = standing
            if time.monotonic() >= deadline:
                raise WaitTimeout(current)
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

    def which(
        self,
        model: str,
        *,
        stage: str | None = None,
        alias: str | None = None,
        workspace: str | None = None,
        at: datetime | str | None = None,
    ) -> str | None:
        """The version that holds ``stage`` (the newest, if several) or ``alias`` now (in MLflow
        ``workspace``; the default one when not given), or held it at ``at`` (a datetime or an
        ISO 8601 time; without a zone, UTC), answered from Checkpoint's timeline. A time before
        Checkpoint's first record of the target raises :class:`NotKnown`."""
        answer = self.which_answer(model, stage=stage, alias=alias, workspace=workspace, at=at)
        if answer.get("known") is False:
            raise NotKnown(answer)
        return answer["version"]

    def which_answer(
        self,
        model: str,
        *,
        stage: str | None = None,
        alias: str | None = None,
        workspace: str | None = None,
        at: datetime | str | None = None,
    ) -> dict:
        """The whole ``/which`` answer (with ``at``: ``known``, ``reason``, the ``periods``)."""
        if bool(stage) == bool(alias):
            raise ValueError("give exactly one of stage= or alias=")
        params = {"model": model, "stage": stage} if stage else {"model": model, "alias": alias}
        if workspace:
            params["workspace"] = workspace
        if at is not None:
            params["at"] = at.isoformat() if isinstance(at, datetime) else at
        return self._call("GET", "/which", params=params)

    def create_token(self, name: str, scopes: list[str], expires_in_days: int) -> dict:
        """A new API token for the signed-in user: ``token`` in the answer is the secret, shown once."""
        return self._call("POST", "/tokens", json={"name": name, "scopes": scopes, "expires_in_days": expires_in_days})

    def tokens(self) -> list[dict]:
        """The signed-in user's tokens (never their secrets)."""
        return self._call("GET", "/tokens")["tokens"]

    def revoke_token(self, token_id: int) -> dict:
        return self._call("DELETE", f"/tokens/{int(token_id)}")

    def plan(self, desired: dict) -> dict:
        """What differs between ``desired`` (a registry.yaml's JSON form: ``{"models": {...}}``)
        and MLflow now: the plan ``checkpoint plan --json`` prints (docs/pipelines.md)."""
        return self._call("POST", "/plan", json={"desired": desired})

    def timeline(self, model: str, *, workspace: str | None = None) -> dict:
        """Every governed target of ``model`` with its periods (``{"model", "workspace", "targets"}``)."""
        params = {"workspace": workspace} if workspace else {}
        return self._call("GET", f"/models/{quote(model, safe='')}/timeline", params=params)


def progress_key(request: dict) -> tuple:
    """Where an undecided request stands, as :meth:`CheckpointClient.wait` compares it."""
    approvals = request.get("approvals") or {}
    return (
        request.get("state"),
        request.get("state_reason"),
        approvals.get("count"),
        tuple(request.get("blocked_by_checks") or ()),
        tuple(request.get("blocked_by_statuses") or ()),
    )
