"""The check kinds a rule may declare (``metric``, ``tags``, ``signature``, ``description``,
``title``, ``http``; ``behaviour`` in ``behaviour.py``). ``Check.evaluate`` never raises: whatever goes wrong is an ``error``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from checkpoint.registry import RegistryError
from checkpoint.review import diff
from checkpoint.review.checks.expressions import Comparison, ExpressionError
from checkpoint.review.checks.results import ERROR, FAIL, PASS, Result, Unevaluable, brief, label, one_line
from checkpoint.review.checks.subject import Subject

KINDS = ("metric", "tags", "signature", "description", "title", "http", "behaviour")


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
        except Unevaluable as exc:
            return Result(ERROR, one_line(str(exc)))
        except RegistryError as exc:
            return Result(ERROR, one_line(f"MLflow could not be read: {brief(exc)}"))
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
            return Result(FAIL, f"{key} is missing: the challenger {label(challenger)} has no source run")
        if key not in values:
            return Result(FAIL, f"{key} is missing: the challenger {label(challenger)}'s run did not log it")
        champion_value = None
        if expr.relative:
            champion = subject.champion
            if champion is None:
                return Result(FAIL, f"no champion to compare {key} with ({expr.text})")
            theirs = subject.metrics(champion)
            if theirs is None or key not in theirs:
                why = "has no source run" if theirs is None else "did not log it"
                return Result(FAIL, f"the champion {label(champion)} lacks {key} ({why}): cannot compare")
            champion_value = theirs[key]
            if champion_value != champion_value:
                return Result(FAIL, f"the champion {label(champion)}'s {key} is NaN: cannot compare")
        value = values[key]
        if value != value:
            return Result(FAIL, f"{key} is NaN on the challenger {label(challenger)}")
        try:
            passed, reason = expr.evaluate(value, champion_value)
        except ExpressionError as exc:
            raise Unevaluable(f"{expr.text}: {exc}") from exc
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
                return Result(FAIL, f"the challenger {label(challenger)} has no source run to carry run tags")
        else:
            have = dict(challenger.tags)
        problems = []
        for key, wanted in self.tags:
            if key not in have:
                problems.append(f"{key} is not set")
            elif wanted is not None and have[key] != wanted:
                problems.append(f"{key} is {have[key]!r}, not {wanted!r}")
        where = f"{self.on} tags of {label(challenger)}"
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
        versus = f"{label(challenger)} vs champion {label(champion)}"
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
        raise Unevaluable("HTTP checks run in the background")  # see call_http
