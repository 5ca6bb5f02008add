"""Reading the policy file's ``rules`` into :class:`~checkpoint.review.policy.Rule` objects.

Every key of a rule is checked here, and every malformed one refused at start naming its path
(``rules[2] (fraud).rollback.required_approvals: ...``): a typo must never leave a target to the
default rule. What a loaded rule *means* (matching, who may review, the status) is ``policy``.
"""

from __future__ import annotations

from checkpoint.review.behaviour.evaluation import EvaluationConfigError, parse_evaluation
from checkpoint.review.changes import DEFAULT_WORKSPACE, ChangeError, canonical_workspace
from checkpoint.review.checks import CheckConfigError, bind, parse_checks, parse_soak
from checkpoint.review.checks.soak import NAME as SOAK
from checkpoint.review.durations import DurationError, parse_duration
from checkpoint.review.governance import STAGES
from checkpoint.review.policy import FastPath, Policy, PolicyError, Rule
from checkpoint.review.statuses import parse_required


def parse(items: object, default: Rule = Rule()) -> Policy:
    """The policy file's ``rules`` (None: no key) over the default rule (from Settings)."""
    rules = () if items is None else tuple(_rule(i, item) for i, item in enumerate(_list(items, "rules")))
    return Policy(rules=rules, default=default)


def _list(value, key: str) -> list:
    if not isinstance(value, list):
        raise PolicyError(f"{key}: expected a list, got {type(value).__name__}")
    return value


def _strings(item: dict, key: str, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = item.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise PolicyError(f"{where}.{key}: expected a list of non-empty strings, got {value!r}")
    return tuple(v.strip() for v in value)


_RULE_KEYS = {
    "name",
    "models",
    "targets",
    "reviewers",
    "groups",
    "required_approvals",
    "allow_self_approval",
    "checks",
    "workspaces",
    "approvals_expire_after",
    "soak",
    "rollback",
    "required_statuses",
    "evaluation",
}
_FAST_PATH_KEYS = {"required_approvals", "allow_self_approval"}


def _fast_path(item: dict, where: str, reviewers: tuple[str, ...]) -> FastPath | None:
    """A rule's ``rollback:`` key; every malformed part refused naming the rule and the key."""
    raw = item.get("rollback")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}.rollback: expected a mapping such as {{required_approvals: 0}}, got {raw!r}")
    unknown = set(map(str, raw)) - _FAST_PATH_KEYS
    if unknown:
        raise PolicyError(
            f"{where}.rollback: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_FAST_PATH_KEYS))}"
        )
    required = raw.get("required_approvals", 1)
    if not isinstance(required, int) or isinstance(required, bool) or not 0 <= required <= 20:
        raise PolicyError(f"{where}.rollback.required_approvals: expected a number from 0 to 20, got {required!r}")
    if reviewers and not item.get("groups") and required > len(reviewers):
        raise PolicyError(f"{where}.rollback.required_approvals: {required} approvals but only {len(reviewers)} reviewers listed")
    self_ok = raw.get("allow_self_approval", False)
    if not isinstance(self_ok, bool):
        raise PolicyError(f"{where}.rollback.allow_self_approval: expected true or false, got {self_ok!r}")
    return FastPath(required, self_ok)


def _workspaces(item: dict, where: str) -> tuple[str, ...]:
    """A rule's ``workspaces``: patterns over MLflow's workspace names. A literal name MLflow
    would refuse (``Team-B``) could never match: refused here rather than silently ignored."""
    patterns = _strings(item, "workspaces", where, ())
    for pattern in patterns:
        if not any(ch in pattern for ch in "*?[") and pattern != DEFAULT_WORKSPACE:
            try:
                canonical_workspace(pattern)
            except ChangeError as exc:
                raise PolicyError(f"{where}.workspaces: {pattern!r} is not an MLflow workspace name ({exc})") from exc
    return patterns


def _rule(index: int, item) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(item, dict):
        raise PolicyError(f"{where}: expected a mapping with models, targets, reviewers...")
    if "required_checks" in item:
        raise PolicyError(f"{where}.required_checks: replaced by 'checks', a list of {{name, kind, required, ...}}")
    unknown = set(map(str, item)) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_RULE_KEYS))}")
    required = item.get("required_approvals", 1)
    if required != "all" and (not isinstance(required, int) or isinstance(required, bool) or not 1 <= required <= 20):
        raise PolicyError(f"{where}.required_approvals: expected a number from 1 to 20 or 'all', got {required!r}")
    reviewers = _strings(item, "reviewers", where, ())
    if required == "all" and not reviewers:
        raise PolicyError(f"{where}.required_approvals: 'all' needs a reviewers list")
    if isinstance(required, int) and reviewers and not item.get("groups") and required > len(reviewers):
        raise PolicyError(f"{where}.required_approvals: {required} approvals but only {len(reviewers)} reviewers listed")
    self_ok = item.get("allow_self_approval", False)
    if not isinstance(self_ok, bool):
        raise PolicyError(f"{where}.allow_self_approval: expected true or false, got {self_ok!r}")
    named = f"{where} ({item['name']})" if item.get("name") else where
    try:
        evaluation = parse_evaluation(item.get("evaluation"), named)
        checks = bind(parse_checks(item.get("checks"), named), tuple(e.name for e in evaluation), named)
    except (CheckConfigError, EvaluationConfigError, ValueError) as exc:
        raise PolicyError(str(exc)) from exc
    expiry = None
    if item.get("approvals_expire_after") is not None:
        try:
            expiry = parse_duration(item["approvals_expire_after"])
        except DurationError as exc:
            raise PolicyError(f"{named}.approvals_expire_after: {exc}") from exc
    targets = tuple(target_pattern(t, where) for t in _strings(item, "targets", where, ("*",)))
    soak = None
    if "soak" in item:
        if any(c.name == SOAK for c in checks):
            raise PolicyError(f"{named}.checks: the name {SOAK!r} is the soak's (the rule's soak key); pick another")
        try:
            soak = parse_soak(item["soak"], named, targets)
        except ValueError as exc:
            raise PolicyError(str(exc)) from exc
        checks = (*checks, soak)
    return Rule(
        name=str(item.get("name") or where),
        models=_strings(item, "models", where, ("*",)),
        targets=targets,
        reviewers=reviewers,
        groups=_strings(item, "groups", where, ()),
        required_approvals=required,
        allow_self_approval=self_ok,
        checks=checks,
        workspaces=_workspaces(item, where),
        approvals_expire_after=expiry,
        soak=soak,
        rollback=_fast_path(item, named, reviewers),
        required_statuses=parse_required(item.get("required_statuses"), named),
        evaluation=evaluation,
    )


def target_pattern(pattern: str, where: str) -> str:
    """A target pattern as loaded: a literal stage spelled canonically, an unknown one refused
    (a typo would otherwise leave the stage to the default rule)."""
    kind, sep, value = pattern.partition(":")
    if kind.lower() != "stage" or not sep or any(ch in value for ch in "*?["):
        return pattern
    found = next((s for s in STAGES if s.lower() == value.strip().lower()), None)
    if found is None:
        raise PolicyError(f"{where}.targets: {pattern!r} names no stage; stages are {', '.join(STAGES)}")
    return f"stage:{found}"
