"""The soak (``checks/soak.py``): how long a version has held a target, from timeline lanes built
from hand-written event logs (boundaries, interrupted holding, unknown before the first record,
a model pattern across a copy), the check's results and how a pending one is shown, and the
``soak:`` key refused when malformed, naming the rule and the key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from checkpoint.errors import ConfigError
from checkpoint.events import timeline
from checkpoint.events.timeline import Asked, Lane
from checkpoint.review import policy_parsing as policy
from checkpoint.review.checks import FAIL, PASS, PENDING, SoakCheck, Subject
from checkpoint.review.checks import soak as soaking
from checkpoint.storage.entities import Event

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


class Log:
    """One model's event log, told in hours from T0."""

    def __init__(self, model: str = "fraud") -> None:
        self.model = model
        self.events: list[Event] = []
        self.asked: dict[int, Asked] = {}

    def applied(self, hour: float, kind: str, target: str, version: str | None, result: str = "done") -> None:
        request_id = len(self.asked) + 1
        self.asked[request_id] = Asked(request_id, kind, target, version, {"kind": kind, "name": self.model}, "alice")
        self.events.append(Event(len(self.events) + 1, request_id, self.model, "applied", "bob", {"result": result}, hours(hour)))

    def outside(self, hour: float, target: str, version: str | None, first_seen: bool = False) -> None:
        data = {"target": target, "version": version, "first_seen": first_seen}
        self.events.append(Event(len(self.events) + 1, None, self.model, "outside_change", "mlflow", data, hours(hour)))

    def lane(self, target: str) -> Lane | None:
        lanes = timeline.build(self.events, self.asked)
        return next((lane for lane in lanes if lane.target == target), None)


CHALLENGER = "alias:challenger"


def story() -> Log:
    """v2 takes challenger at 0 h through Checkpoint; v3 takes it at 30 h; v2 back at 40 h."""
    log = Log()
    log.applied(0, "set_alias", CHALLENGER, "2")
    log.applied(30, "set_alias", CHALLENGER, "3")
    log.applied(40, "set_alias", CHALLENGER, "2")
    return log


@pytest.mark.parametrize(
    ("version", "at", "since"),
    [
        ("2", hours(0), hours(0)),  # the start is included
        ("2", hours(29.99), hours(0)),
        ("2", hours(30), None),  # the end is not: v3 holds it from 30 h
        ("3", hours(30), hours(30)),
        ("3", hours(40), None),
        ("2", hours(41), hours(40)),  # held again: counted from the new holding, not from 0 h
        ("2", hours(-1), None),  # before anything was recorded: unknown, never held
        ("9", hours(10), None),
    ],
)
def test_holding_since_boundaries_and_interruptions(version, at, since):
    assert soaking.holding_since(story().lane(CHALLENGER), version, at) == since


def test_back_to_back_periods_of_one_version_join():
    log = Log()
    log.outside(0, CHALLENGER, "2", first_seen=True)
    log.applied(5, "set_alias", CHALLENGER, "2")  # re-set to the same version: one holding since 0 h
    lane = log.lane(CHALLENGER)
    assert soaking.holding_since(lane, "2", hours(6)) == hours(0)


def test_a_holder_first_noticed_holds_since_it_was_noticed_never_before():
    log = Log()
    log.outside(10, CHALLENGER, "2", first_seen=True)  # it may have held it for a year: unknown
    lane = log.lane(CHALLENGER)
    assert lane is not None and lane.periods[0].how == timeline.UNKNOWN
    assert soaking.holding_since(lane, "2", hours(11)) == hours(10)
    assert soaking.holding_since(lane, "2", hours(9)) is None


def test_no_lane_no_holding():
    assert soaking.holding_since(None, "2", hours(1)) is None


def subject(
    kind: str = "set_alias", version: str | None = "2", model: str = "fraud", change: dict | None = None, lane_of=None, at=None
):
    request = SimpleNamespace(kind=kind, version=version, model_name=model, change=change or {"kind": kind}, challenger=None)
    return Subject(request, registry=None, lane_of=lane_of, at=at)  # type: ignore[arg-type]


def evaluate(check: SoakCheck, log: Log, at: datetime, **kwargs):
    return check.evaluate(subject(lane_of=lambda model, target: log.lane(target), at=at, **kwargs))


SOAK = SoakCheck("soak", True, CHALLENGER, DAY)


def test_pending_then_pass_at_exactly_the_duration():
    log = Log()
    log.applied(0, "set_alias", CHALLENGER, "2")
    waiting = evaluate(SOAK, log, hours(18.8))
    assert waiting.status == PENDING
    assert waiting.reason == "held alias:challenger since 2026-11-01T12:00:00Z; the 1d soak ends 2026-11-02T12:00:00Z"
    assert soaking.ends(waiting.reason) == hours(24)
    assert soaking.shown(waiting.reason, hours(18.8)) == f"5 h 12 m remaining ({waiting.reason})"
    assert evaluate(SOAK, log, hours(24) - timedelta(seconds=1)).status == PENDING
    passed = evaluate(SOAK, log, hours(24))
    assert passed.status == PASS and passed.reason == "held alias:challenger since 2026-11-01T12:00:00Z: at least 1d"
    assert soaking.ends(passed.reason) is None and soaking.shown(passed.reason, hours(30)) == passed.reason


def test_interrupted_holding_fails_then_starts_again():
    log = story()
    moved = evaluate(SOAK, log, hours(35))
    assert moved.status == FAIL
    assert moved.reason.startswith("no longer holds alias:challenger (held it 2026-11-01T12:00:00Z – 2026-11-02T18:00:00Z)")
    again = evaluate(SOAK, log, hours(41))
    assert again.status == PENDING and soaking.ends(again.reason) == hours(64)  # 40 h + 24 h, not 0 h + 24 h
    assert evaluate(SOAK, log, hours(64)).status == PASS


def test_never_held_fails_and_no_record_fails():
    log = story()
    never = evaluate(SOAK, log, hours(50), version="7")
    assert never.status == FAIL and never.reason.startswith("never held alias:challenger: fraud v7 has not held it")
    empty = evaluate(SOAK, Log(), hours(50))
    assert (
        empty.status == FAIL
        and empty.reason == "never held alias:challenger: Checkpoint has no record of alias:challenger of fraud"
    )
    nothing = evaluate(SOAK, log, hours(50), kind="delete_alias", version=None)
    assert nothing.status == FAIL and "names no version" in nothing.reason


def test_without_the_event_log_it_is_an_error_never_a_pass():
    result = SOAK.evaluate(subject())
    assert result.status == "error" and "event log" in result.reason


def copy_of(source: str) -> dict:
    return {"kind": "create_version", "name": "prod.fraud", "source": source, "resolved": source}


@pytest.mark.parametrize(
    ("source", "at", "status", "reason"),
    [
        ("models:/staging.fraud/5", hours(30), PASS, "held model:staging.fraud since 2026-11-01T14:00:00Z: at least 1d"),
        ("models:/staging.fraud/5", hours(20), PENDING, "held model:staging.fraud since"),
        ("models:/staging.fraud/4", hours(30), FAIL, "no longer holds model:staging.fraud"),  # v5 followed it
        ("models:/dev.fraud/5", hours(30), FAIL, "the challenger is dev.fraud v5, not a version of a model matching staging.*"),
        ("s3://bucket/model", hours(30), FAIL, "this request (create_version) names no version"),  # a registration, not a copy
    ],
)
def test_a_model_pattern_follows_the_copy_source(source, at, status, reason):
    staging = Log("staging.fraud")
    staging.applied(0, "create_version", "model:staging.fraud", None, result="'staging.fraud' version 4 created from x")
    staging.applied(2, "create_version", "model:staging.fraud", None, result="'staging.fraud' version 5 created from y")
    check = SoakCheck("soak", True, "model:staging.*", DAY)
    seen: list[tuple[str, str]] = []

    def lane_of(model: str, target: str) -> Lane | None:
        seen.append((model, target))
        return staging.lane(target) if model == "staging.fraud" else None

    result = check.evaluate(subject("create_version", None, "prod.fraud", copy_of(source), lane_of, at))
    assert result.status == status and result.reason.startswith(reason), result
    if status != FAIL or "no longer" in reason:
        assert seen == [("staging.fraud", "model:staging.fraud")]  # the source's model, its latest-version lane


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(seconds=59), "under a minute"),
        (timedelta(minutes=1), "1 m"),
        (timedelta(hours=5, minutes=12, seconds=30), "5 h 12 m"),
        (timedelta(hours=3), "3 h"),
        (timedelta(days=2, hours=3, minutes=9), "2 d 3 h"),
    ],
)
def test_remaining(left, text):
    assert soaking.remaining(left) == text


def test_a_reached_soak_says_it_applies_at_the_next_round():
    reason = "held alias:challenger since 2026-11-01T12:00:00Z; the 1d soak ends 2026-11-02T12:00:00Z"
    assert soaking.shown(reason, hours(25)).startswith("time reached; passes at the background work's next round")


def test_the_rule_implies_a_required_check_named_soak():
    loaded = policy.parse([{"name": "fraud", "targets": ["alias:champion"], "soak": {"held": "stage:staging", "for": "1d12h"}}])
    rule = loaded.rules[0]
    assert rule.soak == SoakCheck("soak", True, "stage:Staging", timedelta(hours=36))
    assert rule.checks[-1] is rule.soak and loaded.soaking
    assert "the challenger first held stage:Staging for at least 1d12h" in rule.describe()
    assert not policy.parse([{"name": "plain"}]).soaking


RULE = {"name": "fraud", "targets": ["alias:champion"]}


@pytest.mark.parametrize(
    ("soak", "extra", "message"),
    [
        ("24h", {}, r"rules\[0\] \(fraud\)\.soak: expected a mapping"),
        ({"held": "alias:challenger"}, {}, r"rules\[0\] \(fraud\)\.soak\.for: missing"),
        ({"held": "alias:challenger", "for": 24}, {}, r"rules\[0\] \(fraud\)\.soak\.for: 24 has no unit"),
        ({"held": "alias:challenger", "for": "1M"}, {}, r"\.soak\.for: '1M': unknown unit 'M'"),
        ({"held": "challenger", "for": "24h"}, {}, r"\.soak\.held: expected alias:NAME, stage:STAGE or model:PATTERN"),
        ({"held": "alias:", "for": "24h"}, {}, r"\.soak\.held: expected alias:NAME"),
        ({"held": None, "for": "24h"}, {}, r"\.soak\.held: expected alias:NAME.*got None"),
        ({"held": "alias:chall*", "for": "24h"}, {}, r"\.soak\.held: 'alias:chall\*': only a model:PATTERN"),
        ({"held": "stage:Prod", "for": "24h"}, {}, r"\.soak\.held: 'stage:Prod' names no stage"),
        ({"held": "alias:Champion", "for": "24h"}, {}, r"\.soak\.held: 'alias:Champion' is a target of this rule itself"),
        ({"held": "alias:challenger", "for": "24h", "after": "1h"}, {}, r"\.soak: unknown key\(s\) after; known: for, held"),
        (
            {"held": "alias:challenger", "for": "24h"},
            {"checks": [{"name": "soak", "kind": "title", "pattern": "x"}]},
            r"\.checks: the name 'soak' is the soak's",
        ),
    ],
)
def test_a_malformed_soak_is_refused_naming_the_rule_and_key(soak, extra, message):
    with pytest.raises(ConfigError, match=message):
        policy.parse([{**RULE, **extra, "soak": soak}])


def test_a_soak_kind_cannot_be_declared_under_checks():
    with pytest.raises(ConfigError, match=r"checks\[0\] \(x\)\.kind: expected one of"):
        policy.parse([{**RULE, "checks": [{"name": "x", "kind": "soak"}]}])


def test_ends_reads_the_stored_and_the_shown_reason():
    reason = "held alias:challenger since 2026-11-01T12:00:00Z; the 1d soak ends 2026-11-02T12:00:00Z"
    assert soaking.ends(reason) == hours(24)
    assert soaking.ends(soaking.shown(reason, hours(3))) == hours(24)
    assert soaking.ends("never held alias:challenger: fraud v7 has not held it since Checkpoint knew it") is None
