"""Who may approve what, and how many approvals a request needs.

Rules live in the policy file (``CHECKPOINT_POLICY_FILE``, key ``rules``), each matched by
model-name pattern × target pattern; the most specific match wins (the one whose patterns
have the most literal characters; the first in the file on a tie). Without rules, one
default applies: ``CHECKPOINT_REQUIRED_APPROVALS`` (1) from anyone but the author.

    rules:
      - name: fraud production
        models: ["fraud-*"]
        targets: ["stage:Production", "alias:champion"]
        workspaces: [team-b]            # MLflow workspaces (``default`` is the default one);
                                        # without the key a rule matches every workspace
        reviewers: [bob, dave]          # users
        groups: [ml-leads]              # and/or groups (header mode)
        required_approvals: all         # or a number
        allow_self_approval: false
        approvals_expire_after: 7d      # 90m, 24h, 7d, 2w (durations.py); without it approvals
                                        # count until the request is decided
        rollback: {required_approvals: 0}   # a genuine rollback's own fast path (see below)
        soak: {held: "alias:challenger", for: 24h}   # or model:staging.* (environment models):
                                        # a required check named soak (checks/soak.py)
        checks:                         # see checkpoint/review/checks/
          - {name: auc-gate, kind: metric, expression: "val_auc >= champion - 0.005"}
          - {name: signature, kind: signature}
          - {name: ticket, kind: title, pattern: "^\\[[A-Z]+-[0-9]+\\]", required: false}
        required_statuses:              # statuses CI posts (statuses.py): each must be success
          - ci/eval                     # from anyone who may post one (the author too)
          - {context: security/scan, from: [ci-bot]}   # only ci-bot's count

Required checks that are not passing hold a request back from ``approved`` (reviews are
still recorded); the status says "blocked by check X".

An approval older than the rule's ``approvals_expire_after`` (by the injected clock) no longer
counts, wherever approvals are counted: the status line, open → approved, and the apply itself
(an approved request whose counting approvals no longer meet the rule when its apply claims it
goes back to open; see ``Workflow.apply``). The background work records each expiry once
(``approval_expired``), and a recorded expiry stands even if the rule later allows longer.

A rule's ``rollback: {required_approvals: 0..20, allow_self_approval: bool}`` replaces those two
keys for a *genuine* rollback request only: one whose record says the event log shows the version
holding that very target before, with the same files (``review/rollback.py`` decides; a request
cannot declare itself one). Everything else of the rule (reviewers, groups, checks, expiry) holds.
With 0 approvals the request applies when it opens (its events say under which rule).

Reading the file's ``rules`` into these objects, every key checked, is ``policy_parsing``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from checkpoint.errors import ConfigError
from checkpoint.identity import User
from checkpoint.review.behaviour.evaluation import EvaluationSet
from checkpoint.review.changes import DEFAULT_WORKSPACE
from checkpoint.review.checks import Check, SoakCheck
from checkpoint.review.durations import format_duration
from checkpoint.review.freezes import Freeze, Hold, held
from checkpoint.review.statuses import RequiredStatus

# The name this module's errors had before there was one ConfigError.
PolicyError = ConfigError


@dataclass(frozen=True)
class FastPath:
    """A rule's ``rollback:`` key: how a genuine rollback is reviewed under it."""

    required_approvals: int = 1  # 0: applies when it opens
    allow_self_approval: bool = False

    def describe(self) -> str:
        if self.required_approvals == 0:
            return "a genuine rollback applies at once"
        own = ", the author's own counting" if self.allow_self_approval else ""
        return f"a genuine rollback needs {self.required_approvals} approval(s){own}"


@dataclass(frozen=True)
class Rule:
    name: str = "default"
    models: tuple[str, ...] = ("*",)
    targets: tuple[str, ...] = ("*",)
    reviewers: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    required_approvals: int | str = 1  # a number, or "all" (every listed reviewer)
    allow_self_approval: bool = False
    checks: tuple[Check, ...] = ()
    # MLflow workspace patterns (``default`` names the default workspace); () matches every one.
    workspaces: tuple[str, ...] = ()
    # How long an approval counts (None: until the request is decided).
    approvals_expire_after: timedelta | None = None
    # What the challenger must first have held, how long (``soak:``); also the last of ``checks``.
    soak: SoakCheck | None = None
    # A genuine rollback's own approvals (None: rollbacks are reviewed like any request).
    rollback: FastPath | None = None
    # True on the rule as a genuine rollback sees it (:meth:`for_rollback`).
    fast_path: bool = False
    # Status contexts CI must report ``success`` for before the request may be approved (statuses.py).
    required_statuses: tuple[RequiredStatus, ...] = ()
    # The datasets both models are scored on in the behavioural diff (``evaluation:``).
    evaluation: tuple[EvaluationSet, ...] = ()

    def for_rollback(self) -> Rule:
        """The rule a genuine rollback request is reviewed under: its ``rollback:`` approvals."""
        if self.rollback is None:
            return self
        fast = self.rollback
        return replace(
            self, required_approvals=fast.required_approvals, allow_self_approval=fast.allow_self_approval, fast_path=True
        )

    def matches(self, model: str, target: str, workspace: str = "") -> bool:
        return (
            any(fnmatch.fnmatchcase(model, p) for p in self.models)
            and any(target_matches(target, p) for p in self.targets)
            and (not self.workspaces or any(fnmatch.fnmatchcase(_ws(workspace), p) for p in self.workspaces))
        )

    def specificity(self, model: str, target: str, workspace: str = "") -> int:
        def literal(patterns: tuple[str, ...], value: str, hit: Callable[[str, str], bool]) -> int:
            hits = [p for p in patterns if hit(value, p)]
            return max((sum(ch not in "*?[]" for ch in p) for p in hits), default=0)

        return (
            literal(self.models, model, fnmatch.fnmatchcase)
            + literal(self.targets, target, target_matches)
            + literal(self.workspaces, _ws(workspace), fnmatch.fnmatchcase)
        )

    @property
    def restricted(self) -> bool:
        """True when only listed users/groups may review."""
        return bool(self.reviewers or self.groups)

    def expires_at(self, approved_at: datetime) -> datetime | None:
        """When an approval given at ``approved_at`` stops counting (None: it does not expire)."""
        return None if self.approvals_expire_after is None else approved_at + self.approvals_expire_after

    def expired(self, approved_at: datetime, at: datetime) -> bool:
        """Whether an approval given at ``approved_at`` is too old to count at ``at``."""
        ends = self.expires_at(approved_at)
        return ends is not None and at >= ends

    def describe(self) -> str:
        who = ", ".join([*self.reviewers, *(f"group {g}" for g in self.groups)]) or "anyone allowed to review"
        need = "all listed reviewers" if self.required_approvals == "all" else f"{self.required_approvals} approval(s)"
        own = "" if self.allow_self_approval else "; not the author"
        where = f" in workspace {', '.join(self.workspaces)}" if self.workspaces else ""
        expiry = self.approvals_expire_after
        lasts = f"; approvals expire after {format_duration(expiry)}" if expiry is not None else ""
        soak = f"; the challenger first {self.soak.describe()}" if self.soak is not None else ""
        ci = ", ".join(s.describe() for s in self.required_statuses)
        soak += f"; statuses {ci} must be success" if ci else ""  # shown with the other preconditions
        if self.fast_path:
            return f"{self.name} (rollback fast path): {need} from {who}{own}{where}{lasts}{soak}"
        fast = f"; {self.rollback.describe()}" if self.rollback is not None else ""
        return f"{self.name}: {need} from {who}{own}{where}{lasts}{soak}{fast}"


def _ws(workspace: str) -> str:
    """The name a rule's ``workspaces`` patterns see: MLflow's own name for the default workspace."""
    return workspace or DEFAULT_WORKSPACE


@dataclass(frozen=True)
class Status:
    """Where a request stands against its rule: shown as "2 of 3 approvals"."""

    count: int
    required: int
    approvers: tuple[str, ...]
    awaited: tuple[str, ...]

    @property
    def met(self) -> bool:
        return self.count >= self.required and not self.awaited_required

    awaited_required: tuple[str, ...] = ()
    # Required checks that are not passing (names): the request may not move to approved.
    blocked_by: tuple[str, ...] = ()
    # Reviewers whose approval expired (approvals_expire_after) and who have none counting now.
    expired: tuple[str, ...] = ()
    # Required status contexts (the rule's required_statuses) whose latest status is not success.
    blocked_by_statuses: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        """Approvals meet the rule, every required check passes and every required status is success."""
        return self.met and not self.blocked_by and not self.blocked_by_statuses

    def line(self) -> str:
        """ "1 of 2 approvals · awaiting bob · blocked by check auc-gate · approval expired: dave"."""
        out = f"{self.count} of {self.required} approvals"
        if self.awaited:
            out += f" · awaiting {', '.join(self.awaited)}"
        if self.blocked_by:
            out += f" · blocked by check{'s' if len(self.blocked_by) > 1 else ''} {', '.join(self.blocked_by)}"
        if self.blocked_by_statuses:
            many = "es" if len(self.blocked_by_statuses) > 1 else ""
            out += f" · blocked by status{many} {', '.join(self.blocked_by_statuses)}"
        if self.expired:
            out += f" · approval{'s' if len(self.expired) > 1 else ''} expired: {', '.join(self.expired)}"
        return out


def target_matches(target: str, pattern: str) -> bool:
    """A rule's target pattern against a request's target. Stages are case-insensitive, as in
    MLflow (``stage:production`` is the Production stage), and aliases are protected whatever
    their case (governance.py; a case-insensitive database collation makes ``CHAMPION`` the
    same alias), so both compare in lower case."""
    kind = target.partition(":")[0].lower()
    if kind in ("stage", "alias") and pattern.partition(":")[0].lower() == kind:
        return fnmatch.fnmatchcase(target.lower(), pattern.lower())
    return fnmatch.fnmatchcase(target, pattern)


# Extra approval right on top of a rule that lists nobody (``mlflow`` mode: MANAGE on the model).
RightCheck = Callable[[User, str], bool]


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    default: Rule = Rule()
    # The file's ``freezes`` (freezes.py): when an approved change to a target waits instead.
    freezes: tuple[Freeze, ...] = ()

    def frozen(self, model: str, target: str, at: datetime) -> Hold | None:
        """The freeze holding ``target`` of ``model`` at ``at`` and when it ends, or None."""
        return held(self.freezes, model, target, at)

    @property
    def required_approvals(self) -> int:
        """The default rule's number (for places that show one number)."""
        return self.default.required_approvals if isinstance(self.default.required_approvals, int) else 1

    @property
    def expiring(self) -> tuple[Rule, ...]:
        """The rules whose approvals expire (the background work then looks for expired ones)."""
        return tuple(r for r in (*self.rules, self.default) if r.approvals_expire_after is not None)

    @property
    def soaking(self) -> bool:
        """Whether any rule has ``soak:`` (the background work then looks for soaks that passed)."""
        return any(r.soak is not None for r in (*self.rules, self.default))

    @property
    def http_checks(self) -> bool:
        """Whether any rule declares an HTTP check (the background thread then polls for them)."""
        return any(not check.local for rule in self.rules for check in rule.checks)

    def evaluation_for(self, model: str, workspace: str = "") -> tuple[EvaluationSet, ...]:
        """The datasets a version of ``model`` would be scored on, whatever the target: the
        ``evaluation:`` entries of every rule (the default last) whose models and workspaces
        match, joined by name, the first in the policy file winning (the compare page has no
        request, so no one target decides the rule)."""
        found: dict[str, EvaluationSet] = {}
        for rule in (*self.rules, self.default):
            ws_ok = not rule.workspaces or any(fnmatch.fnmatchcase(_ws(workspace), p) for p in rule.workspaces)
            if ws_ok and any(fnmatch.fnmatchcase(model, p) for p in rule.models):
                for entry in rule.evaluation:
                    found.setdefault(entry.name, entry)
        return tuple(found.values())

    def rule_for(self, model: str, target: str, workspace: str = "", rollback: bool = False) -> Rule:
        """The most specific rule for ``target`` of ``model`` in MLflow ``workspace`` ("" = default);
        with ``rollback`` (a genuine rollback request) as its ``rollback:`` key changes it."""
        candidates = [
            (r.specificity(model, target, workspace), -i, r)
            for i, r in enumerate(self.rules)
            if r.matches(model, target, workspace)
        ]
        rule = max(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else self.default
        return rule.for_rollback() if rollback else rule

    def may_review(
        self,
        user: User | str,
        author: str,
        model: str = "",
        target: str = "",
        named: tuple[str, ...] = (),
        right: RightCheck | None = None,
        workspace: str = "",
        rollback: bool = False,
    ) -> str | None:
        """Why ``user`` may not review this request, or None when they may (``rollback``: a genuine one)."""
        user = user if isinstance(user, User) else User(user)
        rule = self.rule_for(model, target, workspace, rollback)
        if user.anonymous:
            return "sign in (or pick a name) to review"
        if user.name == author and not rule.allow_self_approval:
            return f"{user.name} opened this request and rule '{rule.name}' does not allow approving your own request"
        # ``named`` only adds people to the awaited list: it never lets anyone approve.
        if user.name in rule.reviewers or user.groups & set(rule.groups):
            return None
        if rule.restricted:
            return f"{user.name} is not a reviewer under rule '{rule.name}' ({rule.describe()})"
        if right is not None and not user.is_admin and not right(user, model):
            return f"{user.name} may not review requests for '{model}' (needs MANAGE on the model in MLflow)"
        return None

    def status(
        self,
        model: str,
        target: str,
        approvers: set[str],
        named: tuple[str, ...] = (),
        workspace: str = "",
        rollback: bool = False,
    ) -> Status:
        rule = self.rule_for(model, target, workspace, rollback)
        if rule.required_approvals == "all":
            everyone = tuple(dict.fromkeys([*rule.reviewers, *named]))
            missing = tuple(u for u in everyone if u not in approvers)
            return Status(len(approvers), max(len(everyone), 1), tuple(sorted(approvers)), missing, missing)
        required = int(rule.required_approvals)
        listed = dict.fromkeys([*named, *rule.reviewers])
        awaited = tuple(u for u in listed if u not in approvers) if len(approvers) < required else ()
        return Status(len(approvers), required, tuple(sorted(approvers)), awaited)

    # -- loading ---------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        """The rules the variables in ``env`` configure (policy file and default): policy_file.py reads them."""
        from checkpoint.policy_file import from_env

        return from_env(env).rules
