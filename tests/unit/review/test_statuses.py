"""Statuses from CI, the pure part: the policy key ``required_statuses`` (every malformed entry
refused naming the key), the posted fields, and which status stands for a context."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from checkpoint.errors import CheckpointError, ConfigError
from checkpoint.review import policy_parsing, statuses
from checkpoint.review.policy import Status
from checkpoint.review.statuses import RequiredStatus
from checkpoint.storage.entities import PostedStatus

AT = datetime(2026, 12, 4, tzinfo=UTC)


def posted(i: int, context: str, state: str, actor: str = "ci-bot", digest: str | None = "d1", request_id=7) -> PostedStatus:
    return PostedStatus(i, request_id, "", "fraud", "3", digest, context, state, "", "", actor, AT)


def test_both_forms_are_read():
    rule = policy_parsing.parse(
        [{"name": "gated", "required_statuses": ["ci/eval", {"context": "security/scan", "from": ["ci-bot", "sec-bot"]}]}]
    ).rules[0]
    assert rule.required_statuses == (RequiredStatus("ci/eval"), RequiredStatus("security/scan", ("ci-bot", "sec-bot")))
    assert "statuses ci/eval, security/scan (from ci-bot, sec-bot) must be success" in rule.describe()
    assert policy_parsing.parse([{"name": "plain"}]).rules[0].required_statuses == ()
    assert policy_parsing.parse([{"required_statuses": [{"context": "x", "from": "ci-bot"}]}]).rules[0].required_statuses == (
        RequiredStatus("x", ("ci-bot",)),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ci/eval", "rules[0] (gated).required_statuses: expected a list of contexts"),
        ([""], "rules[0] (gated).required_statuses[0]: '' is not a status context"),
        (["ci eval"], "rules[0] (gated).required_statuses[0]: 'ci eval' is not a status context"),
        (["x" * 101], "required_statuses[0]: 'xxx"),
        ([7], "rules[0] (gated).required_statuses[0]: expected a context string or {context, from}, got 7"),
        (["ci/eval", "ci/eval"], "rules[0] (gated).required_statuses[1]: context 'ci/eval' is listed twice"),
        ([{"context": "ci/eval", "form": ["bot"]}], "required_statuses[0]: unknown key(s) form; known: context, from"),
        ([{"from": ["bot"]}], "rules[0] (gated).required_statuses[0].context: required"),
        (
            [{"context": "ci/eval"}],
            "rules[0] (gated).required_statuses[0].from: expected a non-empty list of user names, got None",
        ),
        ([{"context": "ci/eval", "from": []}], "required_statuses[0].from: expected a non-empty list"),
        ([{"context": "ci/eval", "from": [""]}], "required_statuses[0].from: expected a non-empty list"),
        ([{"context": "bad context", "from": ["bot"]}], "rules[0] (gated).required_statuses[0].context: 'bad context'"),
    ],
)
def test_a_malformed_entry_is_refused_naming_the_key(value, message):
    with pytest.raises(ConfigError) as caught:
        policy_parsing.parse([{"name": "gated", "required_statuses": value}])
    assert message in str(caught.value)


def test_a_misspelt_key_is_an_unknown_rule_key():
    with pytest.raises(ConfigError, match=r"rules\[0\]: unknown key\(s\) required_status;"):
        policy_parsing.parse([{"required_status": ["ci/eval"]}])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((None, "success", None, None), "context is required"),
        (("  ", "success", None, None), "context is required"),
        (("ci eval", "success", None, None), "context: 1 to 100"),
        (("c" * 101, "success", None, None), "context: 1 to 100"),
        (("ci/eval", "passed", None, None), "state must be one of pending, success, failure, error"),
        (("ci/eval", None, None, None), "state must be one of"),
        (("ci/eval", "success", "javascript:alert(1)", None), "target_url must be an http:// or https://"),
        (("ci/eval", "success", "data:text/html,<b>", None), "target_url must be an http"),
        (("ci/eval", "success", "https://", None), "target_url must be an http"),
        (("ci/eval", "success", "https://ci.example/run 1", None), "target_url must be an http"),
        (("ci/eval", "success", "https://ci.example/\x00", None), "target_url must be an http"),
        (("ci/eval", "success", "https://ci.example/" + "a" * 2000, None), "target_url must be an http"),
        (("ci/eval", "success", 7, None), "target_url must be a string"),
        (("ci/eval", "success", None, "x" * 1001), "description must be a string of at most 1000"),
        (("ci/eval", "success", None, ["x"]), "description must be a string"),
    ],
)
def test_a_bad_post_is_a_400_naming_the_field(fields, message):
    with pytest.raises(CheckpointError) as caught:
        statuses.check_post(*fields)
    assert caught.value.status == 400 and message in caught.value.message


def test_a_good_post_is_read_as_given():
    assert statuses.check_post(" ci/eval ", "failure", "https://ci.example/run/1?x=1#y", "auc 0.7") == (
        "ci/eval",
        "failure",
        "https://ci.example/run/1?x=1#y",
        "auc 0.7",
    )
    assert statuses.check_post("ci/eval", "pending", None, None) == ("ci/eval", "pending", "", "")
    assert statuses.is_web_url("HTTP://ci.example")  # schemes are case-insensitive; browsers read it as http
    assert statuses.is_web_url("http://ci.example:8080/x")


def test_the_latest_per_context_stands_for_the_current_digest_only():
    rows = [
        posted(1, "ci/eval", "success"),
        posted(2, "ci/eval", "failure"),
        posted(3, "lint", "success"),
        posted(4, "ci/eval", "success", digest="d0"),  # newer, but about other files: it does not stand
    ]
    standing = statuses.latest(rows, "d1", [RequiredStatus("ci/eval")])
    assert [(s.status.context, s.status.state, s.required) for s in standing] == [
        ("ci/eval", "failure", True),
        ("lint", "success", False),
    ]
    assert statuses.blocking(standing, [RequiredStatus("ci/eval")]) == ("ci/eval",)
    assert statuses.blocking(standing, [RequiredStatus("lint"), RequiredStatus("scan")]) == ("scan",)
    unmet = statuses.unmet([(standing, [RequiredStatus("ci/eval"), RequiredStatus("scan")], None)])
    assert statuses.blocked_line(unmet) == "required status ci/eval is failure; required status scan is missing"


def test_each_change_of_a_batch_is_met_only_by_what_stands_for_it():
    first = statuses.standing([posted(1, "ci/eval", "success")], [RequiredStatus("ci/eval")])
    second: list = []  # nothing stands for the second change's version
    unmet = statuses.unmet([(first, [RequiredStatus("ci/eval")], 1), (second, [RequiredStatus("ci/eval")], 2)])
    assert unmet == [("2. ci/eval", "missing")]
    assert statuses.blocked_line(unmet) == "required status 2. ci/eval is missing"


def test_a_from_list_counts_only_those_posters():
    rows = [posted(1, "security/scan", "success", actor="ci-bot"), posted(2, "security/scan", "failure", actor="alice")]
    guarded = [RequiredStatus("security/scan", ("ci-bot",))]
    assert [s.status.actor for s in statuses.latest(rows, "d1", guarded)] == ["ci-bot"]
    assert [s.status.actor for s in statuses.latest(rows, "d1")] == ["alice"]  # plain: the latest of anyone
    only_author = [posted(3, "security/scan", "success", actor="alice")]
    assert statuses.blocking(statuses.latest(only_author, "d1", guarded), guarded) == ("security/scan",)
    assert statuses.refusal(guarded, "security/scan", "alice", "r") == "rule 'r' takes status security/scan only from ci-bot"
    assert statuses.refusal(guarded, "security/scan", "ci-bot", "r") is None
    assert statuses.refusal(guarded, "other", "alice", "r") is None


def test_a_request_without_a_digest_matches_statuses_without_one():
    rows = [posted(1, "ci/eval", "success", digest=None)]
    assert [s.status.state for s in statuses.latest(rows, None)] == ["success"]
    assert statuses.latest(rows, "d1") == []


def test_the_status_line_and_readiness_name_the_statuses():
    status = Status(1, 1, ("bob",), (), blocked_by_statuses=("ci/eval", "security/scan"))
    assert status.met and not status.ready
    assert status.line() == "1 of 1 approvals · blocked by statuses ci/eval, security/scan"
    assert Status(1, 1, ("bob",), ()).ready
