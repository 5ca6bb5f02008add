"""Posting statuses (``statuses.py`` says what they mean): checked, stored with their
``status_changed`` events, and then the requests they speak for are moved on, as a check turning
to pass does: open → approved → applied are conditional transitions, so of two app instances
receiving statuses at once exactly one approves and applies a request.
"""

from __future__ import annotations

import logging

from checkpoint.identity import User
from checkpoint.registry import RegistryError
from checkpoint.review import batches, statuses
from checkpoint.review.applying import Applying
from checkpoint.review.workflow_base import NAME_MAX, VERSION_MAX, WorkflowError, as_actor, check_text, digest_of
from checkpoint.storage.entities import PostedStatus, PromoteRequest

log = logging.getLogger("checkpoint.workflow")  # the name operators filter the JSON logs on

# Who moves a request on when a status arrives (the poster is recorded on the status itself).
MOVER = "checkpoint"


class Posting(Applying):
    """The statuses part of the Workflow."""

    def post_request_status(
        self, request_id: int, user: User | str, context: object, state: object, target_url: object, description: object
    ) -> PostedStatus:
        """A status on one request, bound to its challenger's digest now. Refused (403) when the
        request's rule takes that context only ``from`` other users: it would never count."""
        actor = self._poster(user)
        fields = statuses.check_post(context, state, target_url, description)
        request = self.store.get(request_id)
        # Refused when it could count for none of the request's changes (a batch: one whose
        # rule takes it from this poster is enough).
        refused = [statuses.refusal(rule.required_statuses, fields[0], actor, rule.name) for rule in self._part_rules(request)]
        if all(refused):
            raise WorkflowError(403, "PERMISSION_DENIED", str(refused[0]))
        posted = self.store.add_status(
            request_id=request.id,
            workspace=request.workspace,
            model_name=request.model_name,
            version=request.version,
            digest=batches.digest(request),
            context=fields[0],
            state=fields[1],
            target_url=fields[2],
            description=fields[3],
            actor=actor,
        )
        self._move_on([request.id])
        return posted

    def post_version_status(
        self,
        workspace: str,
        model: str,
        version: str,
        user: User | str,
        context: object,
        state: object,
        target_url: object,
        description: object,
    ) -> PostedStatus:
        """A status on a model version, bound to the digest of its files now; it counts for every
        request whose challenger is that version with those files."""
        actor = self._poster(user)
        fields = statuses.check_post(context, state, target_url, description)
        check_text("model name", model, NAME_MAX, required=True)
        check_text("version", version, VERSION_MAX, required=True)
        registry = self.registry_for(workspace)
        try:
            found = registry.version(model, version)
        except RegistryError as exc:
            if exc.not_found or exc.error_code == "INVALID_PARAMETER_VALUE":  # "abc" is no version either
                raise WorkflowError(404, "RESOURCE_DOES_NOT_EXIST", f"'{model}' has no version {version}") from exc
            raise
        digest = digest_of(self._snapshot(found, workspace))
        promoting = self.store.open_requests_promoting(workspace, model, found.version)
        posted = self.store.add_status(
            request_id=None,
            workspace=workspace,
            model_name=model,
            version=found.version,
            digest=digest,
            context=fields[0],
            state=fields[1],
            target_url=fields[2],
            description=fields[3],
            actor=actor,
            for_requests=[r.id for r in promoting if self._promotes(r, workspace, model, found.version, digest)],
        )
        self._move_on([r.id for r in promoting])
        return posted

    def _part_rules(self, request: PromoteRequest) -> list:
        return [self.rule_of(part) for part in batches.parts(request)]

    @staticmethod
    def _promotes(request: PromoteRequest, workspace: str, model: str, version: str, digest: str | None) -> bool:
        """Whether a change of ``request`` promotes that version with those files (a batch: any)."""
        return any(
            (part.workspace, part.challenger.get("name"), str(part.challenger.get("version"))) == (workspace, model, version)
            and digest_of(part.challenger) == digest
            for part in batches.parts(request)
        )

    def request_status_history(self, request_id: int) -> list[PostedStatus]:
        """Every status that was posted for a request (its own and its version's), newest first."""
        request = self.store.get(request_id)
        return sorted(self.store.statuses_of([request])[request.id], key=lambda s: -s.id)

    @staticmethod
    def _poster(user: User | str) -> str:
        actor = as_actor(user)
        if actor.anonymous:
            raise WorkflowError(403, "PERMISSION_DENIED", "sign in (or use a token) to post a status")
        return actor.name

    def _move_on(self, request_ids: list[int]) -> None:
        """A status may have been the last thing a request waited for: approve and apply it (once).
        The status is stored already; a failure here is logged and the next event moves it on."""
        for request_id in request_ids:
            try:
                self._proceed(request_id, MOVER)
            except Exception:
                log.exception("request #%s could not be moved on after a status", request_id)
