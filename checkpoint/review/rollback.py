"""Rollback: a promote request that puts back an earlier holder of an alias or a stage.

A rollback is an ordinary promote request (the same policy, checks, diff and audit) with a
record of what it puts back. The record is built here, never taken from the caller: the version
to put back is chosen among the target's earlier holders in the event log (``events/timeline``),
and the record says whether the log *proves* it (``verified``). Only a verified rollback gets
its rule's ``rollback:`` fast path; a request cannot declare itself one.

What is decided, and how (each refusal is a 409 with the reason; ``docs/security.md``):

* the target must be an alias or a stage (a model's latest version cannot be put back);
* ``to`` already holding the target in MLflow: refused, "already true";
* ``to`` that never held *that* target in *that* workspace by the log: refused (it would be a
  promotion, not a rollback: open an ordinary request);
* the version deleted since: refused;
* a version that is not the one that held it (another run or source) or whose files changed
  since it last held the target (content digest): refused;
* held through a change Checkpoint did not make (an outside change: its files then are unknown)
  or a break-glass apply (its files were not compared when it applied), or files that could not
  be compared (no digest then or now, or a partial one): a rollback,
  but *unverified*: reviewed under the ordinary rule, and the record says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from checkpoint.events import timeline
from checkpoint.review.workflow_base import WorkflowError, digest_of, identity_of, short

FAST_PATH = "fast_path"  # the key of an event's data naming the rule whose fast path was taken


def refuse(message: str) -> WorkflowError:
    return WorkflowError(409, "INVALID_STATE", message)


def label(target: str) -> str:
    """``@champion`` for an alias, ``stage Production`` for a stage (titles and messages)."""
    kind, _, name = target.partition(":")
    return f"@{name}" if kind == "alias" else f"stage {name}"


@dataclass(frozen=True)
class Plan:
    """What a rollback puts back, chosen from the log before the request opens."""

    model: str
    workspace: str
    target: str
    version: str  # the version put back
    held: timeline.Period  # its most recent period on the target
    current: timeline.Period | None  # what holds the target now by the log (None: nothing known)
    replacing: tuple[str, ...]  # the versions holding the target in MLflow now

    def where(self) -> str:
        return f" in workspace '{self.workspace}'" if self.workspace else ""

    def title(self) -> str:
        return f"Roll back {self.model} {label(self.target)} to v{self.version}{self.where()}"

    def description(self, undone_title: str | None = None) -> str:
        """The pre-filled description: what returns, from when, and which request it undoes."""
        held = self.held
        since = held.start.strftime("%Y-%m-%d %H:%M UTC") if held.start else "before Checkpoint's first record"
        until = held.until.strftime("%Y-%m-%d %H:%M UTC") if held.until else "now"
        by = f" (request #{held.request_id})" if held.request_id else f" ({held.how.replace('_', ' ')})"
        lines = [f"Puts v{self.version} back on {self.target} of {self.model}{self.where()}: it held it {since} → {until}{by}."]
        replaced = ", ".join(f"v{v}" for v in self.replacing) or "nothing"
        current = self.current
        if current is not None and current.request_id:
            undone = f" “{undone_title}”" if undone_title else ""
            lines.append(f"Undoes request #{current.request_id}{undone}, which put {replaced} there.")
        else:
            lines.append(f"Replaces {replaced}, which holds it now.")
        return "\n\n".join(lines)


def choose(
    lanes: Iterable[timeline.Lane], model: str, workspace: str, target: str, to: str | None, holding: Iterable[str]
) -> Plan:
    """The earlier holder of ``target`` to put back: ``to``, or (None) the previous holder, the
    most recent earlier one. ``holding``: the versions MLflow says hold the target now."""
    holding = tuple(holding)
    where = f" in workspace '{workspace}'" if workspace else ""
    if to is not None and to in holding:
        raise refuse(f"already true: v{to} holds {target} of '{model}'{where} now; there is nothing to roll back")
    lane = next((lane for lane in lanes if lane.target == target), None)
    if lane is None:
        raise refuse(f"Checkpoint has no record of what held {target} of '{model}'{where}: there is nothing to roll back to")
    current = next((p for p in reversed(lane.periods) if p.until is None and p.how != timeline.UNKNOWN), None)
    earlier = [p for p in timeline.earlier_holders(lane) if p.version not in holding]
    if to is None:
        if not earlier:
            raise refuse(f"no earlier holder of {target} of '{model}'{where} is known: there is nothing to roll back to")
        return Plan(model, workspace, target, earlier[0].version or "", earlier[0], current, holding)
    held = next((p for p in earlier if p.version == to), None)
    if held is None:
        known = ", ".join(f"v{p.version}" for p in earlier) or "none"
        raise refuse(
            f"v{to} never held {target} of '{model}'{where} by Checkpoint's log (earlier holders: {known}): a rollback "
            "puts back an earlier holder; open an ordinary request to promote another version"
        )
    return Plan(model, workspace, target, to, held, current, holding)


def judge(plan: Plan, then: dict | None, now: dict | None) -> tuple[bool, str]:
    """Whether the version put back is provably the one that held the target: ``then`` is its
    snapshot when it last held it (the challenger of the request that put it there; None when it
    got there by an outside change), ``now`` its snapshot in MLflow now (None: deleted). Raises
    the refusal; returns (verified, why not)."""
    what = f"v{plan.version} of '{plan.model}'{plan.where()}"
    if now is None:
        raise refuse(f"{what} no longer exists in MLflow (deleted since it held {plan.target}): it cannot be put back")
    if then is None:
        how = "an outside change" if plan.held.how == timeline.OUTSIDE else "a change whose files Checkpoint did not record"
        return False, f"{what} held {plan.target} through {how}: its files then are unknown"
    if plan.held.how == timeline.BREAK_GLASS:  # applied without comparing its files to the reviewed ones
        return False, f"{what} held {plan.target} through a break-glass apply: its files then were not compared"
    if identity_of(then) != identity_of(now):
        raise refuse(f"{what} is not the version that held {plan.target} (its run or source differs): it cannot be put back")
    before, after = digest_of(then), digest_of(now)
    if before and after and before != after:
        raise refuse(
            f"the files of {what} changed since it last held {plan.target} (digest {short(before)} → {short(after)}): "
            "it is not the version that was there, and cannot be put back"
        )
    if not before or not after:
        why = (now if not after else then).get("digest_error") or "no digest was recorded"
        return False, f"the files of {what} could not be compared with when it held {plan.target} ({why})"
    if then.get("digest_partial") or now.get("digest_partial"):
        return False, f"the files of {what} were compared only in part (CHECKPOINT_DIGEST_MAX_BYTES)"
    return True, ""


def record(plan: Plan, then: dict | None, verified: bool, reason: str) -> dict:
    """The request's ``rollback`` record (stored once, at opening; shown by the API and webhooks)."""
    held, current = plan.held, plan.current
    return {
        "target": plan.target,
        "version": plan.version,
        "replacing": list(plan.replacing),
        "undoes_request_id": current.request_id if current is not None else None,
        "held": {
            "from": held.start.isoformat() if held.start else None,
            "until": held.until.isoformat() if held.until else None,
            "how": held.how,
            "request_id": held.request_id,
        },
        "digest": digest_of(then),
        "verified": verified,
        "reason": reason,
    }


def verified(item: object) -> bool:
    """Whether a request (anything with a ``rollback`` record) is a genuine, verified rollback."""
    found = getattr(item, "rollback", None)
    return bool(isinstance(found, dict) and found.get("verified") is True)


def headline(found: dict) -> str:
    """ "rollback: v3 returns, replacing v5" (the request page, above the diff)."""
    replacing = ", ".join(f"v{v}" for v in found.get("replacing") or []) or "nothing"
    return f"rollback: v{found.get('version')} returns, replacing {replacing}"
