"""What a change would meet if its request were opened now: its rule's checks judged and the diff
against the version it replaces, for the new-request form, without storing anything.

The checks are the rule's own (``checks/``), evaluated on a :class:`Draft` shaped like the stored
request they normally look at; the diff is the request page's (``diff.load_diff``). Nothing here
writes: a soak is judged from what the event log already knows (opening the request first records
what holds the target, ``Checking._notice``), and an HTTP check is only named, since its receiver
is told about a request, which does not exist yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from checkpoint.events import timeline
from checkpoint.registry import RegistryError
from checkpoint.review import checks, diff
from checkpoint.review.changes import Change, ChangeError
from checkpoint.review.checks import soak
from checkpoint.review.diff import wording
from checkpoint.review.workflow_base import WorkflowBase

log = logging.getLogger("checkpoint.workflow")  # the name operators filter the JSON logs on

NOT_YET = "evaluated once the request is open"


@dataclass(frozen=True)
class Draft:
    """The request the form would open, never stored: the fields a check reads."""

    change: dict
    kind: str
    model_name: str
    version: str | None
    target: str
    workspace: str
    title: str
    description: str
    challenger: dict
    id: int | None = None


@dataclass(frozen=True)
class Verdict:
    """One check as it would stand: ``status`` is pass, fail, error or pending (not judged here)."""

    name: str
    kind: str
    required: bool
    status: str
    reason: str


@dataclass
class Preview:
    checks: list[Verdict] = field(default_factory=list)
    diff: diff.ModelDiff | None = None
    diff_line: str = ""
    problem: str | None = None  # why the change or its diff could not be read

    @property
    def failing(self) -> list[Verdict]:
        """The required checks that would hold the request open."""
        return [v for v in self.checks if v.required and v.status in (checks.FAIL, checks.ERROR)]


def preview(workflow: WorkflowBase, change: Change, title: str, description: str, at: datetime) -> Preview:
    """The checks' verdicts and the diff for ``change`` as ``title``/``description`` would open it."""
    registry = workflow.registry_for(change.workspace)
    try:
        change = change.resolve(registry)
        challenger, champion = change.challenger(registry), change.champion(registry)
    except (ChangeError, RegistryError) as exc:
        return Preview(problem=f"MLflow could not be read for this change: {_message(exc)}")
    draft = Draft(
        change=change.to_json(),
        kind=change.kind,
        model_name=change.model_name,
        version=change.version or (challenger.version if challenger else None),
        target=change.target(),
        workspace=change.workspace,
        title=(title or "").strip() or change.title(),
        description=description or "",
        challenger={"name": challenger.name, "version": challenger.version} if challenger else {},
    )
    out = Preview(checks=judge(workflow, change, draft, at))
    if challenger is None:
        out.diff_line = "no model version to compare"
        return out
    try:
        out.diff = diff.load_diff(registry, challenger, champion)
    except RegistryError as exc:
        out.problem = f"the diff could not be read from MLflow: {exc.message}"
        return out
    out.diff_line = wording.summary_line(out.diff)
    return out


def judge(workflow: WorkflowBase, change: Change, draft: Draft, at: datetime) -> list[Verdict]:
    """Each check of the rule in force for ``change``, judged on ``draft`` (HTTP ones only named)."""
    specs = workflow.policy.rule_for(change.model_name, change.target(), change.workspace).checks
    if not specs:
        return []
    gov = workflow.governance

    def lane_of(model: str, target: str) -> timeline.Lane | None:  # read only: see the module's docstring
        lanes = timeline.for_model(workflow.store, model, change.workspace, gov.governed_stages, gov.model_protected(model))
        return next((lane for lane in lanes if lane.target == target), None)

    subject = checks.Subject(draft, workflow.registry_for(change.workspace), lane_of, at)
    out = []
    for spec in specs:
        if not spec.local:
            out.append(Verdict(spec.name, spec.kind, spec.required, checks.PENDING, f"{spec.describe()}: {NOT_YET}"))
            continue
        result = spec.evaluate(subject)
        reason = result.reason
        if isinstance(spec, soak.SoakCheck) and result.status == checks.PENDING:
            reason = soak.shown(reason, at)
        out.append(Verdict(spec.name, spec.kind, spec.required, result.status, reason))
    return out


def _message(exc: ChangeError | RegistryError) -> str:
    return exc.message if isinstance(exc, RegistryError) else str(exc)
