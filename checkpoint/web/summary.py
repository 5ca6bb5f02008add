"""The request page's opening paragraph: what a reviewer needs to act, read in ten seconds.

What moves in words ("fraud-detector: @champion v1 → v3"), who asks, the rule in force and who
is awaited, the checks and CI statuses in counts ("2 of 3 passing, 1 failing: auc-gate"), and the
diff in one line ("1 breaking signature change · 3 metrics worse, 1 better · 5 params changed ·
requirements unchanged"). Pure wording over what the page already has (the request, its rule's
status, check results, statuses and the diff computed from the stored snapshot): no reads here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from checkpoint.review.diff import ModelDiff
from checkpoint.review.diff.types import KeyedDiff, MetricsDiff, SignatureDiff
from checkpoint.review.policy import Status
from checkpoint.web.rendering import asked, target_label

CLOSED = ("applied", "rejected", "withdrawn")


def plural(count: int, noun: str, many: str | None = None) -> str:
    """ "1 param", "5 params"; ``many`` for a noun whose plural is not ``noun + "s"``."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


# -- what moves ------------------------------------------------------------------------------


def moves(item, champion: dict | None | bool = True) -> str:
    """ "fraud-detector: @champion v1 → v3"; a stage "Production v1 → v3"; a first promotion
    "@champion (none) → v3"; a copy "prod.fraud-detector: new version from fraud-detector v2".

    ``champion``: the version the page's diff compares against (as for the headline); True for
    the one recorded on the request. Kinds that move no pointer say what they ask, in words."""
    champion = item.champion if champion is True else champion
    where = f"[{item.workspace}] " if getattr(item, "workspace", "") else ""
    held = champion.get("version") if isinstance(champion, dict) else None
    if item.kind in ("set_alias", "transition") and item.version:
        before = f"v{held}" if held else "(none)"
        return f"{where}{item.model_name}: {target_label(item.target)} {before} → v{item.version}"
    if item.kind == "delete_alias":
        was = f" (held v{held})" if held else ""
        return f"{where}{item.model_name}: {target_label(item.target)}{was} → removed"
    if item.target.startswith("model:") and item.version:
        source = (item.challenger or {}).get("name") or item.model_name
        latest = f" (latest there: v{held})" if held else ""
        return f"{where}{item.model_name}: new version from {source} v{item.version}{latest}"
    return f"{where}{asked(item)}"


# -- who asks, who decides ---------------------------------------------------------------------


def asker(item) -> str:
    """ "alice asked 2026-12-04 10:05 UTC"."""
    return f"{item.author} asked {item.created_at.strftime('%Y-%m-%d %H:%M UTC')}"


def approvals(rule_name: str, status: Status, state: str) -> str:
    """ "Rule gated: 1 of 2 approvals (carol), awaiting bob, dave" — or, decided, what it got."""
    given = f" ({', '.join(status.approvers)})" if status.approvers else ""
    head = f"Rule {rule_name}: {status.count} of {status.required} approval{'s' if status.required != 1 else ''}{given}"
    if state in CLOSED or state == "approved":
        return head
    if status.awaited:
        return f"{head}, awaiting {', '.join(status.awaited)}"
    if status.count < status.required:
        return f"{head}, awaiting anyone the rule allows"
    return f"{head}: enough"


def decided(state: str, state_reason: str = "") -> str | None:
    """A decided request's state in words ("Applied.", "Rejected: …"); None while undecided."""
    if state not in (*CLOSED, "failed"):
        return None
    reason = state_reason.strip()
    if reason.rstrip(".").lower() == state:  # a reason that only repeats the state ("applied") says nothing
        reason = ""
    return f"{state.capitalize()}{': ' + reason if reason else ''}."


# -- checks and statuses -------------------------------------------------------------------


def checks_line(checks: Sequence) -> str | None:
    """ "2 of 3 passing, 1 failing: auc-gate" (an optional one says so); None without checks."""
    if not checks:
        return None
    by: dict[str, list[str]] = {"fail": [], "error": [], "pending": []}
    for check in checks:
        if check.status in by:
            by[check.status].append(check.name + ("" if check.required else " (optional)"))
    passing = sum(1 for check in checks if check.status == "pass")
    parts = [f"{passing} of {len(checks)} passing"]
    for status, word in (("fail", "failing"), ("error", "in error"), ("pending", "pending")):
        if by[status]:
            parts.append(f"{len(by[status])} {word}: {', '.join(by[status])}")
    return ", ".join(parts)


STATUS_WORDS = (("failure", "failing"), ("error", "in error"), ("pending", "pending"))


def statuses_line(standing: Sequence, missing: Iterable) -> str | None:
    """ "1 of 2 success, 1 failing: ci/tests, 1 expected: ci/build"; None when CI posted nothing
    and the rule expects nothing. ``standing``: the latest status per context (``.status``,
    ``.required``); ``missing``: the rule's required contexts with no status yet."""
    expected = [spec.context for spec in missing]
    if not standing and not expected:
        return None
    by: dict[str, list[str]] = {state: [] for state, _ in STATUS_WORDS}
    for s in standing:
        if s.status.state in by:
            by[s.status.state].append(s.status.context + ("" if s.required else " (optional)"))
    success = sum(1 for s in standing if s.status.state == "success")
    parts = [f"{success} of {len(standing) + len(expected)} success"]
    parts += [f"{len(by[state])} {word}: {', '.join(by[state])}" for state, word in STATUS_WORDS if by[state]]
    if expected:
        parts.append(f"{len(expected)} expected: {', '.join(expected)}")
    return ", ".join(parts)


# -- the diff in one line --------------------------------------------------------------------


def signature_part(signature: SignatureDiff) -> str:
    if "unknown" in (signature.champion_state, signature.challenger_state):
        return "signature not readable"
    breaking = sum(1 for c in signature.changes if c.breaking)
    other = len(signature.changes) - breaking
    if breaking:
        more = f" (and {other} other)" if other else ""
        return f"{plural(breaking, 'breaking signature change')}{more}"
    if other:
        return f"{plural(other, 'signature change')}, none breaking"
    if signature.challenger_state == "absent" and signature.champion_state in ("absent", "none"):
        return "no signature"
    return "signature unchanged"


def metrics_part(metrics: MetricsDiff) -> str:
    """ "3 metrics worse, 1 better, 1 new"; "metrics the same"; "no metrics"."""
    counts = metrics.counts
    found = [(counts[v], v) for v in ("worse", "better", "new", "gone") if counts[v]]
    if not found:
        return "metrics the same" if counts["same"] else "no metrics"
    (first, word), rest = found[0], found[1:]
    return ", ".join([f"{plural(first, 'metric')} {word}", *(f"{n} {w}" for n, w in rest)])


def keyed_part(kd: KeyedDiff | None, noun: str) -> str:
    """ "5 params changed", "params unchanged", "no params"; "… unknown" when a side is unreadable."""
    if kd is None:
        return f"{noun}s unknown"
    changed = len(kd.added) + len(kd.removed) + len(kd.changed)
    if changed:
        return f"{plural(changed, noun)} changed"
    return f"{noun}s unchanged" if kd.unchanged else f"no {noun}s"


def diff_parts(diff: ModelDiff) -> dict:
    """Each diff section's line, by the section's anchor (the diff's table of contents says them)."""
    tags = sum(len(kd.added) + len(kd.removed) + len(kd.changed) for kd in (diff.version_tags.user, diff.run_tags.user))
    differ = [field.replace("_", " ") for field in diff.provenance.changed]
    if diff.provenance.datasets_added or diff.provenance.datasets_removed:
        differ.append("datasets")
    return {
        "signature": signature_part(diff.signature),
        "metrics": metrics_part(diff.metrics),
        "params": keyed_part(diff.params, "param"),
        "requirements": keyed_part(diff.requirements, "requirement"),
        "tags": f"{plural(tags, 'tag')} changed" if tags else "tags unchanged",
        "tags_changed": tags,
        "provenance": "no champion to compare"
        if diff.first_promotion
        else f"{', '.join(differ)} differ{'s' if len(differ) == 1 else ''}"
        if differ
        else "same code and data",
    }


def diff_line(diff: ModelDiff | None) -> str | None:
    """The diff in one line; None when there is no diff to tell of."""
    if diff is None:
        return None
    if diff.first_promotion:
        return f"first promotion: nothing to compare against ({plural(len(diff.metrics.changes), 'metric')} logged)"
    parts = diff_parts(diff)
    return " · ".join(parts[name] for name in ("signature", "metrics", "params", "requirements"))


# -- the paragraph -------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """The parts of the page's opening paragraph, each a plain sentence (the template escapes them)."""

    moves: str
    asker: str
    approvals: str
    decided: str | None = None
    checks: str | None = None
    statuses: str | None = None
    diff: str | None = None
    your_turn: bool = False  # the reader may review it now and has not yet
    checks_failing: bool = False  # a check fails or errs: that sentence is marked
    statuses_failing: bool = False

    @property
    def breaking(self) -> bool:
        """The diff line tells of a breaking signature change (``signature_part``'s words)."""
        return self.diff is not None and "breaking signature change" in self.diff

    def sentences(self) -> list[str]:
        """The paragraph as plain text, in reading order (what the unit tests and email read)."""
        out = [f"{self.moves}, {self.asker}.", f"{self.approvals}."]
        out += [self.decided] if self.decided else []
        out += [f"Checks: {self.checks}."] if self.checks else []
        out += [f"CI statuses: {self.statuses}."] if self.statuses else []
        out += [f"Diff: {self.diff}."] if self.diff else []
        return out


def summarise(
    item,
    *,
    champion: dict | None | bool,
    rule_name: str,
    status: Status,
    checks: Sequence = (),
    standing: Sequence = (),
    missing: Iterable = (),
    diff: str | None = None,
    reader: str = "",
    may_review: bool = False,
    parts: Sequence = (),
) -> Summary:
    """The summary of ``item`` as ``reader`` sees it; ``diff`` is :func:`diff_line`'s line (the
    page keeps it with its rendered diff, so a kept diff is not computed again for it). ``parts``:
    a batch's changes as requests of their own (``review/batches.parts``), each moving something."""
    return Summary(
        moves=" · ".join(moves(part) for part in parts) if parts else moves(item, champion),
        asker=asker(item),
        approvals=approvals(rule_name, status, item.state),
        decided=decided(item.state, item.state_reason),
        checks=checks_line(checks),
        statuses=statuses_line(standing, missing),
        diff=diff,
        your_turn=may_review and reader not in status.approvers and item.state == "open",
        checks_failing=any(check.status in ("fail", "error") for check in checks),
        statuses_failing=any(s.status.state in ("failure", "error") for s in standing),
    )
