"""Checks on a promote request, like CI status checks on a pull request.

Declared per rule in the policy file (``checks:``), each ``{name, kind, required, ...}``:

* ``metric`` — ``val_auc >= 0.9``, ``val_auc >= champion - 0.005``, ``latency_ms <= champion * 1.1``;
* ``tags`` — tags the version (or its run, ``on: run``) must carry: ``validation_status: passed``;
* ``signature`` — no input removed or retyped, outputs unchanged, compared with the champion;
* ``description`` — a minimum description length; ``title`` — a regex the title must match;
* ``http`` — Checkpoint POSTs the request's JSON to ``url``; the receiver answers
  ``{"status": "pass"|"fail", "reason": "..."}``. Evaluated in the background, never in a page.

A result is ``pass``, ``fail``, ``error`` (the check could not be evaluated: MLflow unreachable,
a bad answer) or ``pending`` (an HTTP check waiting for the background thread). Nothing that
goes wrong while evaluating ever turns into a pass.

Metric expressions are parsed by the small grammar below (a tokenizer and a recursive-descent
parser over numbers, ``champion`` and ``+ - * /``), never by ``eval``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError, ReadTimeoutError

from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review import changes, diff

PASS, FAIL, ERROR, PENDING = "pass", "fail", "error", "pending"
STATUSES = (PASS, FAIL, ERROR, PENDING)
KINDS = ("metric", "tags", "signature", "description", "title", "http")
NAME_MAX = 200  # check_results.name
REASON_MAX = 500
EXPRESSION_MAX = 500
MAX_DEPTH = 20
HTTP_ANSWER_MAX = 64 * 1024


class CheckConfigError(ValueError):
    """A check in the policy file is invalid; the message names the rule and field."""


class ExpressionError(ValueError):
    """A metric expression that the grammar refuses."""


# -- the expression grammar --------------------------------------------------------------
#
#   comparison := metric OP sum END          OP: >= > <= < == !=
#   sum        := product (("+" | "-") product)*
#   product    := unary (("*" | "/") unary)*
#   unary      := ("-" | "+") unary | atom
#   atom       := NUMBER | "champion" | "(" sum ")"
#   metric     := NAME | `any text but a backquote`
#
# ``champion`` is the champion's value of the same metric. Names are only ever looked up
# as metric keys; nothing is called, imported or read as an attribute.

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_./:]*)"
    r"|`(?P<quoted>[^`]+)`"
    r"|(?P<op>>=|<=|==|!=|>|<)"
    r"|(?P<punct>[-+*/()]))"
)
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}  # fmt: skip
_SYMBOL = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "=", "!=": "≠", "+": "+", "-": "−", "*": "×", "/": "÷"}


@dataclass(frozen=True)
class Token:
    kind: str  # number / name / op / punct / end
    text: str
    at: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            start = pos + len(text[pos:]) - len(text[pos:].lstrip())
            if text[start] == "=":
                raise ExpressionError(f"a single '=' at position {start + 1}: use == to compare")
            raise ExpressionError(f"unexpected character {text[start]!r} at position {start + 1}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "quoted":
            kind = "name"
        tokens.append(Token(kind, value, match.start(kind) + 1))
        pos = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Champion:
    pass


@dataclass(frozen=True)
class Neg:
    operand: Node


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Node
    right: Node


Node = Num | Champion | Neg | BinOp


@dataclass(frozen=True)
class Comparison:
    metric: str
    op: str
    rhs: Node
    text: str

    @property
    def relative(self) -> bool:
        return _uses_champion(self.rhs)

    def evaluate(self, value: float, champion: float | None) -> tuple[bool, str]:
        """Whether ``value`` passes, and the one-line reason (numbers filled in)."""
        threshold = evaluate_node(self.rhs, champion)
        passed = OPS[self.op](value, threshold)
        shown = render(self.rhs, champion)
        if not isinstance(self.rhs, Num):
            shown += f" = {_num(threshold)}"
        verdict = _SYMBOL[self.op] if passed else f"is not {_SYMBOL[self.op]}"
        return passed, f"{self.metric} {_num(value)} {verdict} {shown}"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0

    @property
    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def comparison(self) -> Comparison:
        first = self.take()
        if first.kind != "name":
            raise ExpressionError(f"an expression starts with the metric's name, got {_show(first)}")
        if first.text == "champion":
            raise ExpressionError("write the metric on the left: val_auc >= champion - 0.005")
        op = self.take()
        if op.kind != "op":
            raise ExpressionError(f"expected a comparison (>=, >, <=, <, ==, !=) after {first.text!r}, got {_show(op)}")
        rhs = self.sum()
        end = self.peek
        if end.kind != "end":
            raise ExpressionError(f"unexpected {_show(end)} at position {end.at} (after a complete expression)")
        return Comparison(first.text, op.text, rhs, self.text)

    def sum(self) -> Node:
        node = self.product()
        while self.peek.text in ("+", "-") and self.peek.kind == "punct":
            op = self.take().text
            node = BinOp(op, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.peek.text in ("*", "/") and self.peek.kind == "punct":
            op = self.take().text
            node = BinOp(op, node, self.unary())
        return node

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"the expression is nested more than {MAX_DEPTH} deep")
        try:
            token = self.peek
            if token.kind == "punct" and token.text in ("-", "+"):
                self.take()
                operand = self.unary()
                return Neg(operand) if token.text == "-" else operand
            return self.atom()
        finally:
            self.depth -= 1

    def atom(self) -> Node:
        token = self.take()
        if token.kind == "number":
            value = float(token.text)
            if not math.isfinite(value):
                raise ExpressionError(f"{token.text} is not a finite number")
            return Num(value)
        if token.kind == "name":
            if token.text == "champion":
                return Champion()
            if token.text.startswith("champion.") or "." in token.text:
                raise ExpressionError(f"{token.text!r}: attribute access is not supported")
            raise ExpressionError(f"unknown name {token.text!r}: the right-hand side uses numbers and 'champion' only")
        if token.kind == "punct" and token.text == "(":
            node = self.sum()
            close = self.take()
            if close.text != ")":
                raise ExpressionError(f"expected ')' at position {close.at}, got {_show(close)}")
            return node
        raise ExpressionError(f"expected a number, 'champion' or '(' at position {token.at}, got {_show(token)}")


def _show(token: Token) -> str:
    return "the end of the expression" if token.kind == "end" else repr(token.text)


def parse_expression(text: str) -> Comparison:
    """Parse ``metric OP expression``; raises ExpressionError saying what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > EXPRESSION_MAX:
        raise ExpressionError(f"the expression is {len(text)} characters; at most {EXPRESSION_MAX}")
    return _Parser(text.strip()).comparison()


def evaluate_node(node: Node, champion: float | None) -> float:
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Champion):
        if champion is None:
            raise ExpressionError("the expression refers to the champion, and there is none")
        return champion
    if isinstance(node, Neg):
        return -evaluate_node(node.operand, champion)
    left, right = evaluate_node(node.left, champion), evaluate_node(node.right, champion)
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    if right == 0:
        raise ExpressionError("division by zero")
    return left / right


def render(node: Node, champion: float | None, parent: int = 0) -> str:
    """The right-hand side in words, the champion's value filled in: ``champion 0.905 − 0.005``."""
    if isinstance(node, Num):
        return _num(node.value)
    if isinstance(node, Champion):
        return "champion" if champion is None else f"champion {_num(champion)}"
    if isinstance(node, Neg):
        return f"−{render(node.operand, champion, 3)}"
    level = 1 if node.op in "+-" else 2
    text = f"{render(node.left, champion, level)} {_SYMBOL[node.op]} {render(node.right, champion, level + 1)}"
    return f"({text})" if level < parent else text


def _uses_champion(node: Node) -> bool:
    if isinstance(node, Champion):
        return True
    if isinstance(node, Neg):
        return _uses_champion(node.operand)
    if isinstance(node, BinOp):
        return _uses_champion(node.left) or _uses_champion(node.right)
    return False


def _num(value: float) -> str:
    return "NaN" if value != value else f"{value:.6g}"


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    status: str
    reason: str


def one_line(text: str, limit: int = REASON_MAX) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _brief(exc: RegistryError) -> str:
    message = exc.message.strip().splitlines()[0] if exc.message.strip() else ""
    if message.lstrip().startswith("<"):
        message = ""
    return f"{exc.error_code} (HTTP {exc.status})" + (f": {message[:200]}" if message else "")


# -- what a check looks at ------------------------------------------------------------------


class Subject:
    """One request's challenger and champion as MLflow holds them now, read lazily and once
    per evaluation round (the registry adapter caches runs and artifacts on top)."""

    def __init__(self, request: Any, registry: Registry) -> None:
        self.request = request
        self.registry = registry

    @cached_property
    def change(self) -> changes.Change:
        return changes.from_json(self.request.change)

    @cached_property
    def challenger(self) -> Version | None:
        return self.change.challenger(self.registry)

    @cached_property
    def champion(self) -> Version | None:
        return self.change.champion(self.registry)

    def need_challenger(self) -> Version:
        if self.challenger is None:
            if self.request.challenger:
                gone = f"{self.request.challenger.get('name')} v{self.request.challenger.get('version')}"
                raise _Error(f"the challenger ({gone}) no longer exists in MLflow")
            raise _Error(f"this request ({self.request.kind}) has no model version to check")
        return self.challenger

    def run(self, version: Version) -> dict | None:
        return self.registry.run(version.run_id) if version.run_id else None

    def fresh_run(self, version: Version) -> dict | None:
        """The run read now, not from the adapter's cache: tags are set on finished runs too."""
        if not version.run_id:
            return None
        return self.registry.call("GET", "runs/get", query={"run_id": version.run_id})["run"]

    def metrics(self, version: Version) -> dict[str, float] | None:
        """Latest value per metric key of the version's run; None when it has no run."""
        run = self.run(version)
        if run is None:
            return None
        out: dict[str, float] = {}
        for m in (run.get("data") or {}).get("metrics") or ():
            if "key" in m:
                try:
                    out[m["key"]] = float(m.get("value", "NaN"))
                except (TypeError, ValueError):
                    out[m["key"]] = math.nan
        return out

    def run_tags(self, version: Version) -> dict[str, str] | None:
        run = self.fresh_run(version)
        if run is None:
            return None
        return {t["key"]: t.get("value", "") or "" for t in (run.get("data") or {}).get("tags") or () if "key" in t}

    def signature_info(self, version: Version) -> diff.VersionInfo:
        """The version's MLmodel as the diff reads it; raises _Error when it cannot be read."""
        key = (version.name, version.version)
        cache = self.__dict__.setdefault("_mlmodels", {})
        if key not in cache:
            info = diff.VersionInfo(name=version.name, version=version.version, run_id=version.run_id, source=version.source)
            try:
                info.signature, info.flavors = diff.parse_mlmodel(self.registry.version_artifact_text(version, "MLmodel"))
                info.mlmodel_read = True
            except RegistryError as exc:
                raise _Error(f"the MLmodel of {version.name} v{version.version} could not be read: {_brief(exc)}") from exc
            except ValueError as exc:
                raise _Error(f"the MLmodel of {version.name} v{version.version} could not be parsed: {exc}") from exc
            cache[key] = info
        return cache[key]


class _Error(Exception):
    """The check could not be evaluated (recorded as ``error``)."""


def _label(version: Version) -> str:
    return f"v{version.version}"


# -- the check kinds ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One declared check. ``evaluate`` never raises: anything unexpected is an ``error``."""

    name: str
    required: bool = True
    kind: ClassVar[str] = ""
    local: ClassVar[bool] = True  # False: evaluated by the background thread

    def evaluate(self, subject: Subject) -> Result:
        try:
            return self._evaluate(subject)
        except _Error as exc:
            return Result(ERROR, one_line(str(exc)))
        except RegistryError as exc:
            return Result(ERROR, one_line(f"MLflow could not be read: {_brief(exc)}"))
        except Exception as exc:  # noqa: BLE001 - bad data must show as an error, never pass
            return Result(ERROR, one_line(f"could not be evaluated: {type(exc).__name__}: {exc}"))

    def _evaluate(self, subject: Subject) -> Result:
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


@dataclass(frozen=True)
class MetricCheck(Check):
    expression: Comparison | None = None
    kind: ClassVar[str] = "metric"

    def describe(self) -> str:
        return self.expression.text if self.expression else ""

    def _evaluate(self, subject: Subject) -> Result:
        assert self.expression is not None
        expr, key = self.expression, self.expression.metric
        challenger = subject.need_challenger()
        values = subject.metrics(challenger)
        if values is None:
            return Result(FAIL, f"{key} is missing: the challenger {_label(challenger)} has no source run")
        if key not in values:
            return Result(FAIL, f"{key} is missing: the challenger {_label(challenger)}'s run did not log it")
        champion_value = None
        if expr.relative:
            champion = subject.champion
            if champion is None:
                return Result(FAIL, f"no champion to compare {key} with ({expr.text})")
            theirs = subject.metrics(champion)
            if theirs is None or key not in theirs:
                why = "has no source run" if theirs is None else "did not log it"
                return Result(FAIL, f"the champion {_label(champion)} lacks {key} ({why}): cannot compare")
            champion_value = theirs[key]
            if champion_value != champion_value:
                return Result(FAIL, f"the champion {_label(champion)}'s {key} is NaN: cannot compare")
        value = values[key]
        if value != value:
            return Result(FAIL, f"{key} is NaN on the challenger {_label(challenger)}")
        try:
            passed, reason = expr.evaluate(value, champion_value)
        except ExpressionError as exc:
            raise _Error(f"{expr.text}: {exc}") from exc
        return Result(PASS if passed else FAIL, reason)


@dataclass(frozen=True)
class TagsCheck(Check):
    tags: tuple[tuple[str, str | None], ...] = ()  # (key, value); None: any value
    on: str = "version"
    kind: ClassVar[str] = "tags"

    def describe(self) -> str:
        return f"{self.on} tags " + ", ".join(k if v is None else f"{k} = {v}" for k, v in self.tags)

    def _evaluate(self, subject: Subject) -> Result:
        challenger = subject.need_challenger()
        if self.on == "run":
            have = subject.run_tags(challenger)
            if have is None:
                return Result(FAIL, f"the challenger {_label(challenger)} has no source run to carry run tags")
        else:
            have = dict(challenger.tags)
        problems = []
        for key, wanted in self.tags:
            if key not in have:
                problems.append(f"{key} is not set")
            elif wanted is not None and have[key] != wanted:
                problems.append(f"{key} is {have[key]!r}, not {wanted!r}")
        where = f"{self.on} tags of {_label(challenger)}"
        if problems:
            return Result(FAIL, one_line(f"{where}: " + "; ".join(problems)))
        return Result(PASS, one_line(f"{where}: " + ", ".join(k if v is None else f"{k} = {v}" for k, v in self.tags)))


@dataclass(frozen=True)
class SignatureCheck(Check):
    kind: ClassVar[str] = "signature"

    def describe(self) -> str:
        return "signature compatible with the champion"

    def _evaluate(self, subject: Subject) -> Result:
        challenger = subject.need_challenger()
        champion = subject.champion
        if champion is None:
            return Result(PASS, "no champion to compare with")
        new = subject.signature_info(challenger)
        old = subject.signature_info(champion)
        compared = diff.diff_signature(old, new)
        versus = f"{_label(challenger)} vs champion {_label(champion)}"
        if compared.breaking:
            reasons = [c.reason for c in compared.changes if c.breaking] or compared.notes
            return Result(FAIL, one_line(f"{versus}: " + "; ".join(reasons)))
        if compared.challenger_state == "absent" and compared.champion_state == "absent":
            return Result(PASS, f"{versus}: neither version has a signature")
        changed = [c.reason for c in compared.changes]
        detail = f"compatible ({'; '.join(changed)})" if changed else "unchanged"
        return Result(PASS, one_line(f"{versus}: {detail}"))


@dataclass(frozen=True)
class DescriptionCheck(Check):
    min_length: int = 1
    kind: ClassVar[str] = "description"

    def describe(self) -> str:
        return f"description of at least {self.min_length} characters"

    def _evaluate(self, subject: Subject) -> Result:
        length = len(subject.request.description.strip())
        if length >= self.min_length:
            return Result(PASS, f"description has {length} characters (at least {self.min_length})")
        return Result(FAIL, f"description has {length} characters; at least {self.min_length} required")


@dataclass(frozen=True)
class TitleCheck(Check):
    pattern: str = ""
    kind: ClassVar[str] = "title"

    def describe(self) -> str:
        return f"title matches {self.pattern}"

    def _evaluate(self, subject: Subject) -> Result:
        if re.search(self.pattern, subject.request.title):
            return Result(PASS, f"title matches {self.pattern}")
        return Result(FAIL, one_line(f"title {subject.request.title!r} does not match {self.pattern}"))


@dataclass(frozen=True)
class HttpCheck(Check):
    url: str = ""
    timeout: float = 5.0
    retries: int = 2
    kind: ClassVar[str] = "http"
    local: ClassVar[bool] = False

    def describe(self) -> str:
        return f"POST {self.url}"

    def _evaluate(self, subject: Subject) -> Result:
        raise _Error("HTTP checks run in the background")  # see call_http


# -- the HTTP check -----------------------------------------------------------------------

_RETRY_PAUSE = 0.25  # seconds, doubled per try
_http = urllib3.PoolManager(num_pools=8, maxsize=4, retries=False)


def call_http(check: HttpCheck, payload: Mapping[str, Any], *, sleep: Callable[[float], None] = time.sleep) -> Result:
    """POST ``payload`` and read ``{"status": "pass"|"fail", "reason"}``; time-bounded, retried
    on connection errors and 5xx (not on a timeout: a slow receiver would only be slower again)."""
    body = json.dumps(_finite(payload), default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "checkpoint-checks",
               "X-Checkpoint-Check": check.name}  # fmt: skip
    tries = 1 + check.retries
    last = ""
    for attempt in range(tries):
        if attempt:
            sleep(_RETRY_PAUSE * 2 ** (attempt - 1))
        try:
            answer = _http.request("POST", check.url, body=body, headers=headers, preload_content=False,
                                   timeout=urllib3.Timeout(connect=check.timeout, read=check.timeout))  # fmt: skip
            try:
                raw = answer.read(HTTP_ANSWER_MAX + 1)
            finally:
                answer.release_conn()
        except ReadTimeoutError:
            return Result(ERROR, f"{check.url} did not answer within {check.timeout:g} s")
        except (HTTPError, OSError) as exc:
            last = f"{check.url} could not be reached: {type(exc).__name__}"
            continue
        if answer.status >= 500:
            last = f"{check.url} answered HTTP {answer.status}"
            continue
        return _read_answer(check, answer.status, raw)
    return Result(ERROR, one_line(f"{last} (tried {tries} time{'s' if tries > 1 else ''})"))


def _read_answer(check: HttpCheck, status: int, raw: bytes) -> Result:
    if not 200 <= status < 300:
        return Result(ERROR, f"{check.url} answered HTTP {status}")
    if len(raw) > HTTP_ANSWER_MAX:
        return Result(ERROR, f"{check.url} answered with more than {HTTP_ANSWER_MAX // 1024} KB")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Result(ERROR, one_line(f"{check.url} answered with something that is not JSON: {raw[:80]!r}"))
    if not isinstance(data, dict) or data.get("status") not in (PASS, FAIL):
        shown = json.dumps(data)[:120] if not isinstance(data, dict) else repr(data.get("status"))[:120]
        return Result(ERROR, one_line(f"{check.url} answered without a status of 'pass' or 'fail' (got {shown})"))
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        return Result(ERROR, f"{check.url} answered with a reason that is not a string")
    return Result(data["status"], one_line(reason) or f"the receiver says {data['status']}")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such metric values travel as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def diff_summary(subject: Subject) -> dict[str, Any]:
    """What an HTTP receiver most likely wants from the diff: metrics side by side and
    signature changes (reads the registry adapter already cached for the local checks)."""
    challenger, champion = subject.challenger, subject.champion
    if challenger is None:
        return {}
    mine = subject.metrics(challenger) or {}
    theirs = (subject.metrics(champion) or {}) if champion else {}
    out: dict[str, Any] = {
        "metrics": {k: {"challenger": mine.get(k), "champion": theirs.get(k)} for k in sorted({*mine, *theirs})},
    }
    try:
        sig = diff.diff_signature(subject.signature_info(champion) if champion else None, subject.signature_info(challenger))
        out["signature"] = {"breaking": sig.breaking, "changes": [c.reason for c in sig.changes], "notes": sig.notes}
    except _Error as exc:
        out["signature"] = {"error": str(exc)}
    return out


# -- policy file -------------------------------------------------------------------------

_COMMON = {"name", "kind", "required"}
_PARAMS = {
    "metric": {"expression"},
    "tags": {"tags", "on"},
    "signature": set(),
    "description": {"min_length"},
    "title": {"pattern"},
    "http": {"url", "timeout", "retries"},
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
        raise CheckConfigError(f"{where}.tags: expected a mapping such as {{validation_status: passed}} "
                               f"or a list such as ['validation_status = passed'], got {raw!r}")  # fmt: skip
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
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise CheckConfigError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
    timeout = item.get("timeout", 5)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0.1 <= timeout <= 30:
        raise CheckConfigError(f"{where}.timeout: expected seconds from 0.1 to 30, got {timeout!r}")
    retries = item.get("retries", 2)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 3:
        raise CheckConfigError(f"{where}.retries: expected a whole number from 0 to 3, got {retries!r}")
    return HttpCheck(name, required, url, float(timeout), retries)


_BUILDERS: dict[str, Callable[[dict, str, str, bool], Check]] = {
    "metric": _metric, "tags": _tags, "signature": _signature, "description": _description, "title": _title,
    "http": _http_check,
}  # fmt: skip
# How often the background thread looks for queued HTTP checks (queuing one also wakes it).
CHECKS_INTERVAL = 15.0
# An HTTP check's claim (see Store.claim_check) outlives its longest evaluation: 4 tries × 30 s plus pauses.
HTTP_LEASE_SECONDS = 180.0
