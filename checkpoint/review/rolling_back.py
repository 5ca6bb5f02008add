"""The rollback part of the Workflow: what a rollback of a target puts back (chosen from the
timeline, after noticing any outside change of the target), and opening its request. The
request itself is an ordinary one (``Workflow.open``) with the record ``rollback.py`` builds.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from checkpoint.events import timeline
from checkpoint.identity import User
from checkpoint.review import rollback
from checkpoint.review.applying import Applying
from checkpoint.review.changes import Change, SetAlias, Transition
from checkpoint.review.governance import canonical_stage
from checkpoint.review.workflow_base import NAME_MAX, TARGET_MAX, VERSION_MAX, WorkflowError, check_text
from checkpoint.storage.entities import PromoteRequest

log = logging.getLogger("checkpoint.workflow")  # the name operators filter the JSON logs on


class RollingBack(Applying):
    """Rollbacks, composed into the Workflow (see ``workflow_base.py``)."""

    if TYPE_CHECKING:  # defined by Workflow, which opens every request

        def open(
            self,
            change: Change,
            author: User | str,
            title: str = "",
            description: str = "",
            reviewers: tuple[str, ...] = (),
            apply_at: str | None = None,
            rollback_plan: rollback.Plan | None = None,
        ) -> tuple[PromoteRequest, bool]: ...

    def rollback_plan(self, model: str, target: str, to: str | None, workspace: str = "") -> tuple[rollback.Plan, Change]:
        """What a rollback of ``target`` of ``model`` puts back (``to``, or the previous holder),
        and the change that does it; refused (409) when the log cannot back it (rollback.py)."""
        check_text("model name", model, NAME_MAX, required=True)
        check_text("target", target, TARGET_MAX, required=True)
        check_text("version", to or "", VERSION_MAX)
        kind, _, name = target.partition(":")
        probe: Change
        if kind == "alias" and name:
            probe = SetAlias(model, alias=name, version_="", workspace=workspace)
        elif kind == "stage" and canonical_stage(name) in self.governance.governed_stages:
            stage = canonical_stage(name)
            target = f"stage:{stage}"
            probe = Transition(model, version_="", stage=stage, archive_existing_versions=True, workspace=workspace)
        else:
            raise WorkflowError(
                400, "INVALID_PARAMETER_VALUE", f"target must be alias:NAME or a governed stage (stage:NAME), got {target[:80]!r}"
            )
        registry = self.registry_for(workspace)
        holding: tuple[str, ...]
        if kind == "alias":
            holder = registry.alias_holder(model, name)
            holding = (holder.version,) if holder is not None else ()
        else:
            holding = tuple(v.version for v in registry.stage_holders(model, canonical_stage(name)))
        self._observe(probe, None, probe.champion(registry))  # an unseen outside change joins the log first
        gov = self.governance
        lanes = timeline.for_model(self.store, model, workspace, gov.governed_stages, gov.model_protected(model))
        plan = rollback.choose(lanes, model, workspace, target, to.strip() if to else None, holding)
        return plan, replace(probe, version_=plan.version)

    def open_rollback(
        self,
        model: str,
        target: str,
        to: str | None,
        author: User | str,
        title: str = "",
        description: str = "",
        workspace: str = "",
        reviewers: tuple[str, ...] = (),
    ) -> tuple[PromoteRequest, bool]:
        """Open the request that puts back an earlier holder (an ordinary request with a record)."""
        plan, change = self.rollback_plan(model, target, to, workspace)
        title = (title or "").strip() or plan.title()
        description = description or self.rollback_description(plan)
        return self.open(change, author, title, description, reviewers, rollback_plan=plan)

    def rollback_description(self, plan: rollback.Plan) -> str:
        """The pre-filled description, naming the request being undone by its title."""
        undone = plan.current.request_id if plan.current is not None else None
        title = None
        if undone is not None:
            try:
                title = self.store.get(undone).title
            except Exception:  # a title is a courtesy
                log.warning("could not read request #%s for a rollback's description", undone, exc_info=True)
        return plan.description(title)

    def _rollback_record(self, plan: rollback.Plan, challenger: dict | None) -> dict:
        """Judge the rollback against the version's snapshot now and when it last held the target."""
        then = None
        if plan.held.request_id is not None and plan.held.how != timeline.OUTSIDE:
            held_by = self.store.get(plan.held.request_id)
            then = held_by.challenger or None
        ok, why = rollback.judge(plan, then, challenger)
        return rollback.record(plan, then, ok, why)
