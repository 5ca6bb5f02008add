"""The checks without MLflow: the metric expression grammar (precedence, rendering, every refusal
and where it points), the check kinds evaluated against a stand-in subject, and the policy
file's ``checks`` entries. Imports only the package's public names (review/checks is becoming a
package that re-exports them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from checkpoint.registry import RegistryError
from checkpoint.review.checks import (
    ERROR,
    EXPRESSION_MAX,
    FAIL,
    MAX_DEPTH,
    PASS,
    REASON_MAX,
    CheckConfigError,
    DescriptionCheck,
    ExpressionError,
    HttpCheck,
    MetricCheck,
    Result,
    SignatureCheck,
    TagsCheck,
    TitleCheck,
    evaluate_node,
    one_line,
    parse_check,
    parse_checks,
    parse_expression,
    render,
)
from checkpoint.review.policy import Policy, PolicyError

# -- precedence and evaluation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rhs", "champion", "threshold", "shown"),
    [
        ("1 + 2 * 3", None, 7.0, "1 + 2 × 3"),
        ("(1 + 2) * 3", None, 9.0, "(1 + 2) × 3"),
        ("8 - 4 - 2", None, 2.0, "8 − 4 − 2"),  # left-associative
        ("8 - (4 - 2)", None, 6.0, "8 − (4 − 2)"),
        ("8 / 4 / 2", None, 1.0, "8 ÷ 4 ÷ 2"),
        ("8 / (4 / 2)", None, 4.0, "8 ÷ (4 ÷ 2)"),
        ("-2 * 3", None, -6.0, "−2 × 3"),
        ("--2", None, 2.0, "−−2"),
        ("+2", None, 2.0, "2"),  # a unary plus leaves no trace
        ("-(1 + 1)", None, -2.0, "−(1 + 1)"),
        ("champion * 1.1", 10.0, 11.0, "champion 10 × 1.1"),
        ("champion - champion * 0.5", 4.0, 2.0, "champion 4 − champion 4 × 0.5"),
        ("(champion - 1) / 2", 5.0, 2.0, "(champion 5 − 1) ÷ 2"),
        ("2e-1 + .3", None, 0.5, "0.2 + 0.3"),
    ],
)
def test_precedence_and_rendering(rhs, champion, threshold, shown):
    comparison = parse_expression(f"m >= {rhs}")
    assert evaluate_node(comparison.rhs, champion) == pytest.approx(threshold)
    assert render(comparison.rhs, champion) == shown


def test_render_without_a_champion_names_it():
    assert render(parse_expression("m >= champion + 1").rhs, None) == "champion + 1"


@pytest.mark.parametrize(
    ("text", "relative"),
    [("m >= 1", False), ("m >= champion", True), ("m >= -(1 + champion)", True), ("m >= 2 * (3 - champion)", True)],
)
def test_relative_means_the_champion_is_used(text, relative):
    assert parse_expression(text).relative is relative


def test_the_text_and_metric_are_kept_stripped():
    comparison = parse_expression("   `eval loss` <= 0.5  ")
    assert (comparison.metric, comparison.op, comparison.text) == ("eval loss", "<=", "`eval loss` <= 0.5")


@pytest.mark.parametrize(
    ("text", "value", "passed"),
    [
        ("m >= 1", 1.0, True),
        ("m > 1", 1.0, False),
        ("m <= 1", 1.0, True),
        ("m < 1", 1.0, False),
        ("m == 1", 1.0, True),
        ("m != 1", 1.0, False),
        ("m >= 1", math.nan, False),
        ("m != 1", math.nan, True),
    ],
)
def test_each_comparison_operator(text, value, passed):
    assert parse_expression(text).evaluate(value, None)[0] is passed


# -- what the grammar refuses, and where --------------------------------------------------------

REFUSED = [
    ("single-equals-position", "val_auc = 0.9", "a single '=' at position 9: use == to compare"),
    ("unexpected-character-position", "x >= 1 % 2", "unexpected character '%' at position 8"),
    ("missing-operand", "x >=", "expected a number, 'champion' or '(' at position 5, got the end of the expression"),
    ("operator-twice", "x >= >= 1", "expected a number, 'champion' or '(' at position 6, got '>='"),
    ("trailing", "x >= 1 )", "unexpected ')' at position 8 (after a complete expression)"),
    ("unclosed", "x >= (1 + 2", "expected ')' at position 12, got the end of the expression"),
    ("no-comparison", "x + 1", "expected a comparison (>=, >, <=, <, ==, !=) after 'x', got '+'"),
    ("number-first", "0.9 <= x", "an expression starts with the metric's name, got '0.9'"),
    ("champion-first", "champion <= x", "write the metric on the left: val_auc >= champion - 0.005"),
    ("unknown-name", "x >= y", "unknown name 'y': the right-hand side uses numbers and 'champion' only"),
    ("attribute", "x >= champion.value", "'champion.value': attribute access is not supported"),
    ("dotted-name", "x >= os.environ", "'os.environ': attribute access is not supported"),
    ("infinite", "x >= 1e400", "1e400 is not a finite number"),
    ("empty", "", "the expression is empty"),
    ("too-long", "x >= " + "1" * EXPRESSION_MAX, f"the expression is {EXPRESSION_MAX + 5} characters; at most {EXPRESSION_MAX}"),
    ("too-deep", "x >= " + "-" * (MAX_DEPTH + 1) + "1", f"the expression is nested more than {MAX_DEPTH} deep"),
    ("empty-backquotes", "`` >= 1", "unexpected character '`' at position 1"),
]


@pytest.mark.parametrize(("text", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refusals_say_what_and_where(text, message):
    with pytest.raises(ExpressionError) as refused:
        parse_expression(text)
    assert str(refused.value) == message


def test_not_text_is_refused():
    with pytest.raises(ExpressionError, match="the expression is empty"):
        parse_expression(None)  # type: ignore[arg-type]


def test_depth_limit_is_exactly_max_depth():
    parse_expression("x >= " + "-" * (MAX_DEPTH - 1) + "1")  # within the limit: parses


# -- the check kinds against a stand-in subject -----------------------------------------------


@dataclass
class Version:
    version: str


@dataclass
class StandIn:
    """What a check asks of its subject (checks.Subject reads these from MLflow)."""

    challenger: Version | None = field(default_factory=lambda: Version("2"))
    champion: Version | None = field(default_factory=lambda: Version("1"))
    logged: dict[str, dict[str, float] | None] = field(default_factory=dict)  # version -> metrics
    request: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(title="", description="", kind="set_alias"))
    broken: Exception | None = None

    def need_challenger(self) -> Version:
        if self.challenger is None:
            raise AssertionError("the tests give every metric check a challenger")
        return self.challenger

    def metrics(self, version: Version) -> dict[str, float] | None:
        if self.broken is not None:
            raise self.broken
        return self.logged.get(version.version)


def metric(expression: str) -> MetricCheck:
    return MetricCheck("auc-gate", True, parse_expression(expression))


METRIC_CASES = [
    (
        "passes",
        "auc >= champion - 0.01",
        {"2": {"auc": 0.9}, "1": {"auc": 0.905}},
        Result(PASS, "auc 0.9 ≥ champion 0.905 − 0.01 = 0.895"),
    ),
    ("fails", "auc >= 0.95", {"2": {"auc": 0.9}}, Result(FAIL, "auc 0.9 is not ≥ 0.95")),
    ("no-run", "auc >= 0.5", {"2": None}, Result(FAIL, "auc is missing: the challenger v2 has no source run")),
    ("not-logged", "auc >= 0.5", {"2": {"loss": 1.0}}, Result(FAIL, "auc is missing: the challenger v2's run did not log it")),
    ("nan", "auc >= 0.5", {"2": {"auc": math.nan}}, Result(FAIL, "auc is NaN on the challenger v2")),
    (
        "champion-lacks-it",
        "auc >= champion",
        {"2": {"auc": 0.9}, "1": {"loss": 1.0}},
        Result(FAIL, "the champion v1 lacks auc (did not log it): cannot compare"),
    ),
    (
        "champion-no-run",
        "auc >= champion",
        {"2": {"auc": 0.9}, "1": None},
        Result(FAIL, "the champion v1 lacks auc (has no source run): cannot compare"),
    ),
    (
        "champion-nan",
        "auc >= champion",
        {"2": {"auc": 0.9}, "1": {"auc": math.nan}},
        Result(FAIL, "the champion v1's auc is NaN: cannot compare"),
    ),
    (
        "division-by-zero",
        "auc >= champion / 0",
        {"2": {"auc": 0.9}, "1": {"auc": 0.8}},
        Result(ERROR, "auc >= champion / 0: division by zero"),
    ),
]


@pytest.mark.parametrize(("expression", "logged", "expected"), [c[1:] for c in METRIC_CASES], ids=[c[0] for c in METRIC_CASES])
def test_metric_check(expression, logged, expected):
    assert metric(expression).evaluate(StandIn(logged=logged)) == expected


def test_a_relative_metric_check_without_a_champion_fails():
    subject = StandIn(champion=None, logged={"2": {"auc": 0.9}})
    assert metric("auc >= champion").evaluate(subject) == Result(FAIL, "no champion to compare auc with (auc >= champion)")


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            RegistryError(503, "TEMPORARILY_UNAVAILABLE", "MLflow is restarting\nmore"),
            Result(ERROR, "MLflow could not be read: TEMPORARILY_UNAVAILABLE (HTTP 503): MLflow is restarting"),
        ),
        (
            RegistryError(502, "BAD_GATEWAY", "<html>proxy page</html>"),
            Result(ERROR, "MLflow could not be read: BAD_GATEWAY (HTTP 502)"),
        ),
        (KeyError("data"), Result(ERROR, "could not be evaluated: KeyError: 'data'")),
    ],
    ids=["registry-error", "html-body-left-out", "anything-else"],
)
def test_what_goes_wrong_while_evaluating_is_an_error_never_a_pass(broken, expected):
    assert metric("auc >= 0.5").evaluate(StandIn(broken=broken)) == expected


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("  a model card  ", Result(PASS, "description has 12 characters (at least 10)")),
        ("short", Result(FAIL, "description has 5 characters; at least 10 required")),
    ],
)
def test_description_check(description, expected):
    subject = StandIn(request=SimpleNamespace(description=description, title=""))
    assert DescriptionCheck("desc", True, 10).evaluate(subject) == expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("[ML-12] faster model", Result(PASS, r"title matches ^\[ML-[0-9]+\]")),
        ("faster model", Result(FAIL, r"title 'faster model' does not match ^\[ML-[0-9]+\]")),
        (None, Result(ERROR, "could not be evaluated: TypeError: expected string or bytes-like object, got 'NoneType'")),
    ],
)
def test_title_check(title, expected):
    subject = StandIn(request=SimpleNamespace(description="", title=title))
    assert TitleCheck("ticket", True, r"^\[ML-[0-9]+\]").evaluate(subject) == expected


def test_an_http_check_is_never_evaluated_in_a_page():
    check = HttpCheck("ci", True, "http://127.0.0.1:9/x")
    assert not check.local
    assert check.evaluate(StandIn()) == Result(ERROR, "HTTP checks run in the background")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("one\n  two\tthree ", "one two three"),
        ("x" * (REASON_MAX + 10), "x" * (REASON_MAX - 1) + "…"),
        ("x" * REASON_MAX, "x" * REASON_MAX),
    ],
)
def test_one_line(text, expected):
    assert one_line(text) == expected


# -- the policy file's checks entries ----------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected", "describe"),
    [
        (
            {"name": " auc ", "kind": "metric", "expression": "auc >= 0.9"},
            MetricCheck("auc", True, parse_expression("auc >= 0.9")),
            "auc >= 0.9",
        ),
        (
            {"name": "sig", "kind": "signature", "required": False},
            SignatureCheck("sig", False),
            "signature compatible with the champion",
        ),
        (
            {"name": "t", "kind": "tags", "tags": {"qa": "passed", "n": 3, "owner": None}},
            TagsCheck("t", True, (("qa", "passed"), ("n", "3"), ("owner", None)), "version"),
            None,
        ),
        (
            {"name": "t", "kind": "tags", True: "run", "tags": ["qa = passed", "owner"]},
            TagsCheck("t", True, (("qa", "passed"), ("owner", None)), "run"),
            None,
        ),
        (
            {"name": "d", "kind": "description", "min_length": 20},
            DescriptionCheck("d", True, 20),
            "description of at least 20 characters",
        ),
        ({"name": "ti", "kind": "title", "pattern": "^x"}, TitleCheck("ti", True, "^x"), "title matches ^x"),
        (
            {"name": "ci", "kind": "http", "url": "https://ci.example/check"},
            HttpCheck("ci", True, "https://ci.example/check", 5.0, 2),
            "POST https://ci.example/check",
        ),
        (
            {"name": "ci", "kind": "http", "url": "http://127.0.0.1:9/", "timeout": 0.1, "retries": 0},
            HttpCheck("ci", True, "http://127.0.0.1:9/", 0.1, 0),
            None,
        ),
    ],
    ids=["metric", "signature", "tags-mapping", "tags-list-bare-on", "description", "title", "http-defaults", "http-set"],
)
def test_a_check_entry_is_read_with_its_defaults(item, expected, describe):
    check = parse_check(item, "rules[0]")
    assert check == expected
    if describe is not None:
        assert check.describe() == describe


CHECK_REFUSALS = [
    ("not-a-mapping", "auc", r"^rules\[0\]\.checks\[0\]: expected a mapping with name, kind and the kind's fields$"),
    ("long-name", {"name": "n" * 201, "kind": "signature"}, r"\.name: expected a name of 1 to 200 characters"),
    (
        "no-kind",
        {"name": "a"},
        r"^rules\[0\]\.checks\[0\] \(a\)\.kind: expected one of metric, tags, signature, "
        r"description, title, http, behaviour, got None$",
    ),
    (
        "metric-bad-expression",
        {"name": "a", "kind": "metric", "expression": "auc >= y"},
        r"^rules\[0\]\.checks\[0\] \(a\)\.expression 'auc >= y': unknown name 'y'",
    ),
    ("tags-no-key", {"name": "a", "kind": "tags", "tags": ["= passed"]}, r"\(a\)\.tags: '= passed' names no tag"),
    (
        "tags-bad-value",
        {"name": "a", "kind": "tags", "tags": {"qa": ["x"]}},
        r"\(a\)\.tags: 'qa': expected a tag name and a text value",
    ),
    (
        "description-bool",
        {"name": "a", "kind": "description", "min_length": True},
        r"\(a\)\.min_length: expected a whole number from 1 to 65536, got True",
    ),
    ("title-empty", {"name": "a", "kind": "title", "pattern": ""}, r"\(a\)\.pattern: expected a regular expression, got ''"),
    (
        "http-no-host",
        {"name": "a", "kind": "http", "url": "http:///x"},
        r"\(a\)\.url: expected an http:// or https:// URL, got 'http:///x'",
    ),
    (
        "http-retries",
        {"name": "a", "kind": "http", "url": "http://x/", "retries": 4},
        r"\(a\)\.retries: expected a whole number from 0 to 3, got 4",
    ),
    (
        "http-timeout-bool",
        {"name": "a", "kind": "http", "url": "http://x/", "timeout": True},
        r"\(a\)\.timeout: expected seconds from 0\.1 to 30",
    ),
    (
        "unknown-key",
        {"name": "a", "kind": "title", "pattern": "x", "url": "y"},
        r"\(a\): unknown key\(s\) url for a title check; known: kind, name, pattern, required$",
    ),
]


@pytest.mark.parametrize(("item", "pattern"), [c[1:] for c in CHECK_REFUSALS], ids=[c[0] for c in CHECK_REFUSALS])
def test_a_bad_check_entry_names_its_key_path(item, pattern):
    with pytest.raises(CheckConfigError, match=pattern):
        parse_checks([item], "rules[0]")


def test_checks_of_a_rule():
    assert parse_checks(None, "rules[0]") == ()
    with pytest.raises(CheckConfigError, match=r"^rules\[2\]\.checks: expected a list of checks, got str$"):
        parse_checks("auc", "rules[2]")
    with pytest.raises(CheckConfigError, match=r"^rules\[0\]\.checks\[1\]\.name: 'a' is used twice in this rule$"):
        parse_checks([{"name": "a", "kind": "signature"}, {"name": " a", "kind": "signature"}], "rules[0]")


# -- moved from tests/integration/test_checks.py --------------------------------------------------

# -- the grammar -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "champion", "passed", "reason"),
    [
        ("val_auc >= champion - 0.005", 0.912, 0.905, True, "val_auc 0.912 ≥ champion 0.905 − 0.005 = 0.9"),
        ("val_auc >= champion - 0.005", 0.890, 0.905, False, "val_auc 0.89 is not ≥ champion 0.905 − 0.005 = 0.9"),
        ("latency_ms <= champion * 1.1", 10.5, 10.0, True, "latency_ms 10.5 ≤ champion 10 × 1.1 = 11"),
        ("latency_ms <= champion * 1.1", 11.5, 10.0, False, "latency_ms 11.5 is not ≤ champion 10 × 1.1 = 11"),
        ("val_auc > 0.9", 0.91, None, True, "val_auc 0.91 > 0.9"),
        ("loss < 1e-3", 5e-4, None, True, "loss 0.0005 < 0.001"),
        ("loss < 1E+2", 5.0, None, True, "loss 5 < 100"),
        ("n == 3", 3.0, None, True, "n 3 = 3"),
        ("n != 3", 3.0, None, False, "n 3 is not ≠ 3"),
        ("x >= -(champion + 1) * 2", 0.0, 1.0, True, "x 0 ≥ −(champion 1 + 1) × 2 = -4"),
        ("x >= champion / 2 + .5", 1.0, 1.0, True, "x 1 ≥ champion 1 ÷ 2 + 0.5 = 1"),
        ("`val-auc/test` >= 0.5", 0.6, None, True, "val-auc/test 0.6 ≥ 0.5"),
        ("eval/auc.macro >= 0.5", 0.4, None, False, "eval/auc.macro 0.4 is not ≥ 0.5"),
    ],
)
def test_expressions_parse_and_evaluate(text, value, champion, passed, reason):
    expression = parse_expression(text)
    assert expression.evaluate(value, champion) == (passed, reason)
    assert expression.relative == ("champion" in text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('true') >= 1", "unexpected character"),
        ("val_auc >= __import__", "unknown name '__import__'"),
        ("val_auc >= __import__('os')", "unexpected character"),
        ("val_auc >= champion.__class__", "attribute access is not supported"),
        ("val_auc >= champion(1)", "unexpected '('"),
        ("val_auc >= open", "unknown name 'open'"),
        ("val_auc ~ 0.9", "unexpected character '~'"),
        ("val_auc = 0.9", "use == to compare"),
        ("val_auc => 0.9", "use == to compare"),
        ("val_auc >= 0.9 and 1", "unexpected 'and'"),
        ("val_auc >= 0.9 0.8", "unexpected '0.8'"),
        ("val_auc >= 2 ** 3", "expected a number"),
        ("val_auc >= (1", "expected ')'"),
        ("val_auc >= 1e999", "not a finite number"),
        ("val_auc", "expected a comparison"),
        ("champion >= val_auc", "write the metric on the left"),
        (">= 1", "starts with the metric's name"),
        ("   ", "empty"),
        ("x >= " + "(" * 30 + "1" + ")" * 30, "nested more than"),
        ("x >= " + "1+" * 300 + "1", "at most 500"),
    ],
)
def test_expressions_the_grammar_refuses(text, message):
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_expression(text)


def test_division_by_zero_and_missing_champion_are_errors_not_passes():
    with pytest.raises(ExpressionError, match="division by zero"):
        parse_expression("x >= champion / 0").evaluate(1.0, 1.0)
    with pytest.raises(ExpressionError, match="there is none"):
        parse_expression("x >= champion").evaluate(1.0, None)


# -- the policy file -------------------------------------------------------------------------


def load_policy(tmp_path, text: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return Policy.from_env({"CHECKPOINT_POLICY_FILE": str(path)})


def test_policy_checks_load_with_defaults(tmp_path):
    policy = load_policy(
        tmp_path,
        """
rules:
  - name: fraud
    models: ["fraud-*"]
    checks:
      - {name: auc, kind: metric, expression: "val_auc >= champion - 0.005"}
      - {name: sig, kind: signature, required: false}
      - name: validated
        kind: tags
        on: run
        tags: {validation_status: passed, reviewed: null}
      - {name: listed, kind: tags, tags: ["validation_status = passed", "owner"]}
      - {name: desc, kind: description, min_length: 20}
      - {name: ticket, kind: title, pattern: '^\\[ML-[0-9]+\\]'}
      - {name: ci, kind: http, url: "http://127.0.0.1:9/check", timeout: 1.5, retries: 0}
""",
    )
    rule = policy.rule_for("fraud-detector", "alias:champion")
    by_name = {c.name: c for c in rule.checks}
    assert [c.kind for c in rule.checks] == ["metric", "signature", "tags", "tags", "description", "title", "http"]
    assert by_name["auc"].required and not by_name["sig"].required
    assert by_name["validated"].on == "run"  # a bare `on:` is YAML's boolean true: still read as `on`
    assert by_name["validated"].tags == (("validation_status", "passed"), ("reviewed", None))
    assert by_name["listed"].tags == (("validation_status", "passed"), ("owner", None))
    assert (by_name["ci"].timeout, by_name["ci"].retries) == (1.5, 0)
    assert policy.http_checks
    assert policy.rule_for("churn", "alias:champion").checks == ()


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("{name: a, kind: metric, expression: 'val_auc >= eval(1)'}", r"rules\[0\] \(r\)\.checks\[0\] \(a\)\.expression"),
        ("{name: a, kind: metric}", r"\(a\)\.expression: expected text"),
        ("{name: a, kind: magic}", r"\.kind: expected one of metric, tags"),
        ("{kind: signature}", r"checks\[0\]\.name: expected a name"),
        ("{name: a, kind: title, pattern: '(unclosed'}", r"\(a\)\.pattern '\(unclosed': not a valid regular expression"),
        ("{name: a, kind: description, min_length: 0}", r"\(a\)\.min_length: expected a whole number"),
        ("{name: a, kind: http, url: 'ftp://x/y'}", r"\(a\)\.url: expected an http"),
        ("{name: a, kind: http, url: 'http://x/y', timeout: 600}", r"\(a\)\.timeout: expected seconds"),
        ("{name: a, kind: tags, on: model, tags: {x: y}}", r"\(a\)\.on: expected version or run"),
        ("{name: a, kind: tags, tags: []}", r"\(a\)\.tags: expected a mapping"),
        ("{name: a, kind: signature, required: maybe}", r"\(a\)\.required: expected true or false"),
        ("{name: a, kind: signature, expression: 'x > 1'}", r"unknown key\(s\) expression for a signature check"),
    ],
)
def test_policy_refuses_bad_checks_naming_rule_and_field(tmp_path, check, message):
    with pytest.raises(PolicyError, match=message):
        load_policy(tmp_path, f"rules:\n  - name: r\n    checks:\n      - {check}\n")


def test_policy_refuses_duplicate_names_and_the_old_key(tmp_path):
    with pytest.raises(PolicyError, match=r"'a' is used twice"):
        load_policy(tmp_path, "rules:\n  - checks: [{name: a, kind: signature}, {name: a, kind: signature}]\n")
    with pytest.raises(PolicyError, match="required_checks: replaced by 'checks'"):
        load_policy(tmp_path, "rules:\n  - required_checks: []\n")
    with pytest.raises(CheckConfigError, match="expected a list of checks"):
        parse_checks({"name": "a"}, "rules[0]")
