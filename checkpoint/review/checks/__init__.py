"""Checks on a promote request, like CI status checks on a pull request.

Declared per rule in the policy file (``checks:``), each ``{name, kind, required, ...}``:

* ``metric`` — ``val_auc >= 0.9``, ``val_auc >= champion - 0.005``, ``latency_ms <= champion * 1.1``;
* ``tags`` — tags the version (or its run, ``on: run``) must carry: ``validation_status: passed``;
* ``signature`` — no input removed or retyped, outputs unchanged, compared with the champion;
* ``description`` — a minimum description length; ``title`` — a regex the title must match;
* ``soak`` — not declared under ``checks:`` but implied by a rule's ``soak:`` key (``soak.py``):
  the challenger held another target for a minimum time;
* ``http`` — Checkpoint POSTs the request's JSON to ``url``; the receiver answers
  ``{"status": "pass"|"fail", "reason": "..."}``. Evaluated in the background, never in a page;
* ``behaviour`` — a gate over the behavioural diff's numbers (``behaviour.py``): ``roc_auc >=
  champion - 0.005`` on a dataset of the rule's ``evaluation:``, or ``examples: no errors``;
  pending until the diff is finished, then judged by the background work.

A result is ``pass``, ``fail``, ``error`` (the check could not be evaluated: MLflow unreachable,
a bad answer) or ``pending`` (an HTTP check waiting for the background thread). Nothing that
goes wrong while evaluating ever turns into a pass.

Metric expressions are parsed by the small grammar below (a tokenizer and a recursive-descent
parser over numbers, ``champion`` and ``+ - * /``), never by ``eval``.
"""

from __future__ import annotations

from checkpoint.review.checks.behaviour import BehaviourCheck, bind
from checkpoint.review.checks.config import CheckConfigError, parse_check, parse_checks
from checkpoint.review.checks.expressions import (
    EXPRESSION_MAX,
    MAX_DEPTH,
    Comparison,
    ExpressionError,
    evaluate_node,
    parse_expression,
    render,
    tokenize,
)
from checkpoint.review.checks.http import CHECKS_INTERVAL, HTTP_ANSWER_MAX, HTTP_LEASE_SECONDS, call_http, diff_summary
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
from checkpoint.review.checks.results import (
    ERROR,
    FAIL,
    NAME_MAX,
    PASS,
    PENDING,
    REASON_MAX,
    STATUSES,
    Result,
    Unevaluable,
    one_line,
)
from checkpoint.review.checks.soak import SoakCheck, parse_soak
from checkpoint.review.checks.subject import Subject

__all__ = [
    "BehaviourCheck",
    "bind",
    "CHECKS_INTERVAL",
    "ERROR",
    "EXPRESSION_MAX",
    "FAIL",
    "HTTP_ANSWER_MAX",
    "HTTP_LEASE_SECONDS",
    "KINDS",
    "MAX_DEPTH",
    "NAME_MAX",
    "PASS",
    "PENDING",
    "REASON_MAX",
    "STATUSES",
    "Check",
    "CheckConfigError",
    "Comparison",
    "DescriptionCheck",
    "ExpressionError",
    "HttpCheck",
    "MetricCheck",
    "Result",
    "SignatureCheck",
    "SoakCheck",
    "Subject",
    "TagsCheck",
    "TitleCheck",
    "Unevaluable",
    "call_http",
    "diff_summary",
    "evaluate_node",
    "one_line",
    "parse_check",
    "parse_checks",
    "parse_expression",
    "parse_soak",
    "render",
    "tokenize",
]
