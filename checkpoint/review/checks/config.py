"""The ``checks:`` list of a policy-file rule, parsed into Check objects; every error names
the rule and the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from checkpoint.review.checks.behaviour import parse_behaviour
from checkpoint.review.checks.expressions import ExpressionError, parse_expression
from checkpoint.review.checks.kinds import (
    KINDS,
    Check,
    DescriptionCheck,
    HttpCheck,
    MetricCheck,
    SignatureCheck,
    TagsCheck,
    TitleCheck,
)
from checkpoint.review.checks.results import NAME_MAX


class CheckConfigError(ValueError):
    """A check in the policy file is invalid; the message names the rule and field."""


_COMMON = {"name", "kind", "required"}
_PARAMS = {
    "metric": {"expression"},
    "tags": {"tags", "on"},
    "signature": set(),
    "description": {"min_length"},
    "title": {"pattern"},
    "http": {"url", "timeout", "retries"},
    "behaviour": {
        "expression",
        "on",
        "examples",
        "metric",
        "threshold",
        "min_absolute_change",
        "min_relative_change",
        "greater_is_better",
    },
}


def parse_checks(raw: Any, where: str) -> tuple[Check, ...]:
    """The ``checks`` list of one rule; raises CheckConfigError naming the rule and field."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CheckConfigError(f"{where}.checks: expected a list of checks, got {type(raw).__name__}")
    out: list[Check] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        check = parse_check(item, f"{where}.checks[{i}]")
        if check.name in seen:
            raise CheckConfigError(f"{where}.checks[{i}].name: {check.name!r} is used twice in this rule")
        seen.add(check.name)
        out.append(check)
    return tuple(out)


def parse_check(item: Any, where: str) -> Check:
    if not isinstance(item, dict):
        raise CheckConfigError(f"{where}: expected a mapping with name, kind and the kind's fields")
    if True in item:  # YAML 1.1 reads a bare `on:` key as the boolean true
        item = {("on" if k is True else k): v for k, v in item.items()}
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_MAX:
        raise CheckConfigError(f"{where}.name: expected a name of 1 to {NAME_MAX} characters, got {name!r}")
    name = name.strip()
    where = f"{where} ({name})"
    kind = item.get("kind")
    if kind not in KINDS:
        raise CheckConfigError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    unknown = set(map(str, item)) - _COMMON - _PARAMS[kind]
    if unknown:
        known = ", ".join(sorted(_COMMON | _PARAMS[kind]))
        raise CheckConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} for a {kind} check; known: {known}")
    required = item.get("required", True)
    if not isinstance(required, bool):
        raise CheckConfigError(f"{where}.required: expected true or false, got {required!r}")
    return _BUILDERS[kind](item, where, name, required)


def _metric(item: dict, where: str, name: str, required: bool) -> Check:
    text = item.get("expression")
    if not isinstance(text, str):
        raise CheckConfigError(f"{where}.expression: expected text such as 'val_auc >= champion - 0.005', got {text!r}")
    try:
        return MetricCheck(name, required, parse_expression(text))
    except ExpressionError as exc:
        raise CheckConfigError(f"{where}.expression {text!r}: {exc}") from exc


def _tags(item: dict, where: str, name: str, required: bool) -> Check:
    on = item.get("on", "version")
    if on not in ("version", "run"):
        raise CheckConfigError(f"{where}.on: expected version or run, got {on!r}")
    raw = item.get("tags")
    pairs: list[tuple[str, str | None]] = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            if not isinstance(key, str) or not key.strip() or not (value is None or isinstance(value, str | int | float)):
                raise CheckConfigError(f"{where}.tags: {key!r}: expected a tag name and a text value (or null: any value)")
            pairs.append((key.strip(), None if value is None else str(value)))
    elif isinstance(raw, list) and all(isinstance(v, str) and v.strip() for v in raw):
        for entry in raw:  # "key = value", or "key" for any value
            key, eq, value = entry.partition("=")
            if not key.strip():
                raise CheckConfigError(f"{where}.tags: {entry!r} names no tag")
            pairs.append((key.strip(), value.strip() if eq else None))
    if not pairs:
        raise CheckConfigError(
            f"{where}.tags: expected a mapping such as {{validation_status: passed}} "
            f"or a list such as ['validation_status = passed'], got {raw!r}"
        )
    return TagsCheck(name, required, tuple(pairs), on)


def _signature(item: dict, where: str, name: str, required: bool) -> Check:
    return SignatureCheck(name, required)


def _description(item: dict, where: str, name: str, required: bool) -> Check:
    length = item.get("min_length")
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= 65536:
        raise CheckConfigError(f"{where}.min_length: expected a whole number from 1 to 65536, got {length!r}")
    return DescriptionCheck(name, required, length)


def _title(item: dict, where: str, name: str, required: bool) -> Check:
    pattern = item.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise CheckConfigError(f"{where}.pattern: expected a regular expression, got {pattern!r}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise CheckConfigError(f"{where}.pattern {pattern!r}: not a valid regular expression: {exc}") from exc
    return TitleCheck(name, required, pattern)


def _http_check(item: dict, where: str, name: str, required: bool) -> Check:
    url = item.get("url")
    if not isinstance(url, str) or (parts := urlsplit(url)).scheme not in ("http", "https") or not parts.hostname:
        raise CheckConfigError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
    timeout = item.get("timeout", 5)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0.1 <= timeout <= 30:
        raise CheckConfigError(f"{where}.timeout: expected seconds from 0.1 to 30, got {timeout!r}")
    retries = item.get("retries", 2)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 3:
        raise CheckConfigError(f"{where}.retries: expected a whole number from 0 to 3, got {retries!r}")
    return HttpCheck(name, required, url, float(timeout), retries)


def _behaviour(item: dict, where: str, name: str, required: bool) -> Check:
    try:
        return parse_behaviour(item, where, name, required, parse_expression)
    except ValueError as exc:
        raise CheckConfigError(str(exc)) from exc


_BUILDERS: dict[str, Callable[[dict, str, str, bool], Check]] = {
    "metric": _metric,
    "tags": _tags,
    "signature": _signature,
    "description": _description,
    "title": _title,
    "http": _http_check,
    "behaviour": _behaviour,
}
