"""Webhooks without a receiver: the payload built from stored rows, the chat line, the body in
each format, the MLflow-style signature and headers, and the ``webhooks`` configuration entries.
(events/notify.py is becoming the package events/webhooks, which re-exports these names.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import yaml

from checkpoint.storage.store import Event, Outgoing

try:  # the package once the split lands; the module until then
    from checkpoint.events import webhooks
except ImportError:
    from checkpoint.events import notify as webhooks

STAMP = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ITEM = SimpleNamespace(target="alias:champion", version="7", title="Ship v7", author="alice", workspace="")
HOOK = webhooks.Webhook(name="ops", url="https://hooks.example/T0/B0/token", events=frozenset({"opened"}), secret="s3")


def outgoing(kind: str = "approved", data: dict | None = None, request_id: int | None = 3, item=ITEM, **extra) -> Outgoing:
    event = Event(11, request_id, "fraud", kind, "dave", data if data is not None else {"n": 1}, STAMP)
    return Outgoing(None, event, item, extra.pop("state", "approved"), extra.pop("comment", None), extra.pop("title", "Ship v7"))


# -- the payload -------------------------------------------------------------------------------


def test_a_request_event_in_mlflows_webhook_shape():
    message = webhooks.payload(outgoing(), "https://cp.example/")
    assert message == {
        "entity": "promote_request",
        "action": "approved",
        "timestamp": "2026-11-23T10:00:00+00:00",
        "data": {
            "request_id": 3,
            "url": "https://cp.example/checkpoint/requests/3",
            "model": "fraud",
            "workspace": "default",
            "target": "alias:champion",
            "version": "7",
            "title": "Ship v7",
            "author": "alice",
            "state": "approved",
            "actor": "dave",
            "event_id": 11,
            "event": {"n": 1},
        },
    }


def test_a_rollback_carries_its_record():
    found = {"target": "alias:champion", "version": "3", "replacing": ["5"], "verified": True}
    item = SimpleNamespace(**{**vars(ITEM), "rollback": found})
    applied = {"result": "done", "break_glass": False, "rollback": found, "fast_path": "fraud production"}
    message = webhooks.payload(outgoing("applied", data=applied, item=item), None)
    assert message["data"]["rollback"] == found and message["data"]["event"]["fast_path"] == "fraud production"
    assert "rollback" not in webhooks.payload(outgoing(), None)["data"]  # an ordinary request's body is unchanged


def test_a_comment_travels_with_its_event_and_a_workspace_is_named():
    item = SimpleNamespace(**{**vars(ITEM), "workspace": "team-b"})
    message = webhooks.payload(outgoing("commented", item=item, comment="looks good"), None)
    assert message["data"]["comment"] == "looks good"
    assert message["data"]["workspace"] == "team-b"
    assert message["data"]["url"] == "/checkpoint/requests/3"  # no public URL: the path


def test_the_audit_head_is_about_the_log():
    head = {"head": "12:" + "a" * 64, "events": 12, "key_id": "k" * 32, "signature": "s" * 64}
    message = webhooks.payload(outgoing("audit_head", head, request_id=None, item=None), "https://cp.example")
    assert message["entity"] == "audit_log" and message["action"] == "audit_head"
    assert message["data"] == {
        "event_id": 11,
        "url": "https://cp.example/checkpoint/api/v1/audit/verify?expect=12%3A" + "a" * 64,
        "model": None,
        "actor": "dave",
        **head,
    }
    assert webhooks.describe(message) == f"audit log head 12:{'a' * 64} (12 events, audit key {'k' * 32})"


CHAT = [
    ("opened", {}, {}, "dave opened #3 “Ship v7” (fraud v7 → alias:champion)"),
    (
        "apply_failed",
        {"error": "MLflow said\n  no"},
        {},
        "dave failed to apply #3 “Ship v7” (fraud v7 → alias:champion): MLflow said no",
    ),
    ("commented", {}, {"comment": "x" * 250}, "dave commented on #3 “Ship v7” (fraud v7 → alias:champion): " + "x" * 200 + "…"),
    ("break_glass", {"reason": "outage"}, {}, "dave BROKE GLASS on #3 “Ship v7” (fraud v7 → alias:champion): outage"),
    ("some_new_kind", {}, {}, "dave some_new_kind #3 “Ship v7” (fraud v7 → alias:champion)"),
    (
        "approval_expired",
        {"review_id": 4, "reviewer": "bob", "approved_at": "2026-11-24T09:00:00+00:00", "rule": "r", "expire_after": "1w"},
        {},
        "dave expired an approval on #3 “Ship v7” (fraud v7 → alias:champion): "
        "bob's approval is older than 1w and no longer counts",
    ),
    (
        "scheduled",
        {"apply_at": "2026-11-30T08:00:00+00:00", "by": "author"},
        {},
        "dave scheduled #3 “Ship v7” (fraud v7 → alias:champion): to apply at 2026-11-30T08:00:00+00:00",
    ),
    (
        "waiting",
        {"waiting_for": {"kind": "freeze", "until": "2026-11-30T07:00:00+00:00", "name": "weekend"}, "reason": "r"},
        {},
        "dave approved (waiting to apply) #3 “Ship v7” (fraud v7 → alias:champion): "
        "until freeze 'weekend' (2026-11-30T07:00:00+00:00)",
    ),
    (
        "released",
        {"waited_for": {"kind": "schedule", "until": "2026-11-30T08:00:00+00:00", "name": None}},
        {},
        "dave released #3 “Ship v7” (fraud v7 → alias:champion): after its apply_at (2026-11-30T08:00:00+00:00)",
    ),
    ("cancelled", {"apply_at": None}, {}, "dave cancelled the scheduled apply of #3 “Ship v7” (fraud v7 → alias:champion)"),
    (
        "behaviour_finished",
        {
            "state": "done",
            "examples": {"breaking": []},
            "datasets": [{"name": "holdout", "agreement": 0.975, "metrics": {"roc_auc": {"delta": 0.012}}}],
        },
        {},
        "dave finished the behavioural diff of #3 “Ship v7” (fraud v7 → alias:champion): "
        "done: holdout: agreement 97.5%, roc_auc +0.012",
    ),
    (
        "status_changed",
        {"scope": "version", "context": "ci/eval", "state": "failure", "model": "fraud", "version": "7", "description": "auc .7"},
        {},
        "dave posted a status on #3 “Ship v7” (fraud v7 → alias:champion): ci/eval is failure (on v7 of fraud): auc .7",
    ),
]


@pytest.mark.parametrize(("kind", "data", "extra", "line"), CHAT, ids=[c[0] for c in CHAT])
def test_chat_lines(kind, data, extra, line):
    assert webhooks.describe(webhooks.payload(outgoing(kind, data, **extra), None)) == line


def test_a_request_for_a_version_carries_its_behaviour_as_of_the_event():
    item = SimpleNamespace(**vars(ITEM), challenger={"name": "fraud", "version": "7", "digest": "d" * 64})
    summary = {"state": "done", "reason": "", "examples": {"inputs": 2, "errors": 0, "breaking": []}, "datasets": []}
    shown = Outgoing(None, outgoing().event, item, "open", None, "Ship v7", summary)
    assert webhooks.payload(shown, None)["data"]["behaviour"] == summary
    none_yet = Outgoing(None, outgoing().event, item, "open", None, "Ship v7")
    assert webhooks.payload(none_yet, None)["data"]["behaviour"] is None  # none had finished then
    assert "behaviour" not in webhooks.payload(outgoing(), None)["data"]  # not about a model version


def test_a_change_of_files_reads_as_such():
    data = {"target": "alias:champion", "version": "5", "files": True, "digest_before": "a" * 64, "digest_after": "b" * 64}
    message = webhooks.payload(outgoing("outside_change", data, request_id=None, item=None), None)
    assert webhooks.describe(message) == (
        "dave saw an outside change to fraud (fraud v5 → alias:champion): "
        f"the files of v5 (alias:champion) changed: digest {'a' * 12} → {'b' * 12}"
    )


# -- the body, the signature, the headers ------------------------------------------------------


def test_the_json_body_is_the_payload_compact_and_sorted():
    raw = webhooks.body(HOOK, outgoing(), "https://cp.example")
    assert raw == json.dumps(webhooks.payload(outgoing(), "https://cp.example"), sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("public_url", "title", "text"),
    [
        (
            "https://cp.example",
            "Ship v7",
            "Checkpoint: dave approved #3 “Ship v7” (fraud v7 → alias:champion) <https://cp.example/checkpoint/requests/3|open>",
        ),
        (
            None,
            "a <b> & c",
            "Checkpoint: dave approved #3 “a &lt;b&gt; &amp; c” (fraud v7 → alias:champion) /checkpoint/requests/3",
        ),
    ],
    ids=["linked", "escaped-no-link"],
)
def test_the_slack_body_is_one_escaped_line(public_url, title, text):
    slack = webhooks.Webhook(name="chat", url="https://hooks.slack.example/x", events=frozenset(), format="slack")
    assert json.loads(webhooks.body(slack, outgoing(title=title), public_url)) == {"text": text}


def test_the_signature_is_mlflows_scheme():
    raw = b'{"a":1}'
    expected = hmac.new(b"s3", b"d-1.1700000000." + raw, hashlib.sha256).digest()
    assert webhooks.sign("s3", "d-1", "1700000000", raw) == "v1," + base64.b64encode(expected).decode()
    assert webhooks.sign("s3", "d-1", "1700000000", raw) != webhooks.sign("s3", "d-2", "1700000000", raw)
    assert webhooks.sign("s3", "d-1", "1700000000", raw) != webhooks.sign("s4", "d-1", "1700000000", raw)


def test_headers_sign_only_with_a_secret():
    raw = b"{}"
    signed = webhooks.headers(HOOK, "d-1", "opened", raw, timestamp=1700000000)
    assert signed == {
        "Content-Type": "application/json",
        "User-Agent": "checkpoint-webhooks/1",
        "X-MLflow-Delivery-Id": "d-1",
        "X-MLflow-Timestamp": "1700000000",
        "X-Checkpoint-Event": "opened",
        "X-MLflow-Signature": webhooks.sign("s3", "d-1", "1700000000", raw),
    }
    unsigned = webhooks.headers(webhooks.Webhook(name="x", url="http://h/", events=frozenset()), "d-1", "opened", raw, 1)
    assert "X-MLflow-Signature" not in unsigned and unsigned["X-MLflow-Timestamp"] == "1"


# -- configuration entries ---------------------------------------------------------------------


def test_an_entry_with_its_defaults():
    (hook,) = webhooks.parse([{"name": " ops ", "url": "https://h.example/x", "events": "applied"}], env={}).hooks
    assert hook == webhooks.Webhook(name="ops", url="https://h.example/x", events=frozenset({"applied"}))
    assert (hook.format, hook.timeout, hook.max_attempts, hook.backoff, hook.max_backoff) == ("json", 5.0, 8, 1.0, 300.0)
    assert hook.lease == 40.0


def test_every_event_means_every_one_but_the_audit_head_and_behaviour_unless_named():
    by_name = {"audit_head", "behaviour_finished"}
    (star,) = webhooks.parse([{"name": "a", "url": "http://h/", "events": ["*"]}], env={}).hooks
    assert not by_name & star.events and star.events == frozenset(webhooks.EVENTS) - by_name
    (both,) = webhooks.parse([{"name": "a", "url": "http://h/", "events": ["*", "audit_head"]}], env={}).hooks
    assert both.events == frozenset(webhooks.EVENTS) - {"behaviour_finished"}
    (all_,) = webhooks.parse([{"name": "a", "url": "http://h/", "events": ["*", *sorted(by_name)]}], env={}).hooks
    assert all_.events == frozenset(webhooks.EVENTS)


@pytest.mark.parametrize(
    ("attempts", "delay"), [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (6, 10.0)], ids=["none", "1", "2", "3", "capped"]
)
def test_backoff_doubles_up_to_its_cap(attempts, delay):
    assert webhooks.Webhook(name="a", url="http://h/", events=frozenset(), backoff=0.5, max_backoff=10).delay(attempts) == delay


def test_urls_and_secrets_may_come_from_the_environment():
    env = {"HOOK_URL": " https://h.example/x ", "HOOK_SECRET": "s3"}
    (hook,) = webhooks.parse([{"name": "a", "url_env": "HOOK_URL", "secret_env": "HOOK_SECRET", "events": ["opened"]}], env).hooks
    assert (hook.url, hook.secret) == ("https://h.example/x", "s3")
    assert "s3" not in repr(hook) and "h.example" not in repr(hook)


REFUSED = [
    ("not-a-list", {"name": "a"}, r"^webhooks: expected a list of webhooks, got dict$"),
    ("not-a-mapping", ["https://h/"], r"^webhooks\[0\]: expected a mapping with name, url, events, secret_env$"),
    ("no-name", [{"url": "http://h/", "events": ["*"]}], r"^webhooks\[0\]\.name: expected a name of 1 to 200 characters$"),
    ("no-url", [{"name": "a", "events": ["*"]}], r"^webhooks\[0\] \(a\): url \(or url_env\) is required$"),
    (
        "ftp-url",
        [{"name": "a", "url": "ftp://h/", "events": ["*"]}],
        r"^webhooks\[0\] \(a\)\.url: expected an http:// or https:// URL$",
    ),
    ("bad-port", [{"name": "a", "url": "http://h:x/", "events": ["*"]}], r"^webhooks\[0\] \(a\)\.url: the port is not a number$"),
    (
        "no-events",
        [{"name": "a", "url": "http://h/", "events": []}],
        r"\(a\)\.events: expected a list of event names, or \[\"\*\"\]",
    ),
    (
        "unknown-event",
        [{"name": "a", "url": "http://h/", "events": ["opend"]}],
        r"\(a\)\.events: unknown event\(s\) opend; known: opened, ",
    ),
    (
        "format",
        [{"name": "a", "url": "http://h/", "events": ["*"], "format": "teams"}],
        r"\(a\)\.format: expected one of json, slack, got 'teams'",
    ),
    (
        "timeout",
        [{"name": "a", "url": "http://h/", "events": ["*"], "timeout": 0}],
        r"\(a\)\.timeout: expected a number from 0\.1 to 120, got 0",
    ),
    (
        "url-env-empty",
        [{"name": "a", "url_env": " ", "events": ["*"]}],
        r"\(a\)\.url_env: expected the name of an environment variable",
    ),
    (
        "secret-blank",
        [{"name": "a", "url": "http://h/", "events": ["*"], "secret": " "}],
        r"\(a\)\.secret: expected a non-empty string",
    ),
]


@pytest.mark.parametrize(("items", "pattern"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_bad_entry_is_refused_with_its_key_path(items, pattern):
    with pytest.raises(ValueError, match=pattern):
        webhooks.parse(items, env={})


# -- configuration: the policy file, and more refusals -------------------------------------------


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"name": "x"}, r"expected a list of webhooks"),
        (["x"], r"webhooks\[0\]: expected a mapping"),
        ([{"url": "http://h/", "events": ["*"]}], r"webhooks\[0\]\.name"),
        ([{"name": "x", "events": ["*"]}], r"url \(or url_env\) is required"),
        ([{"name": "x", "url": "ftp://h/", "events": ["*"]}], r"\.url: expected an http:// or https:// URL"),
        ([{"name": "x", "url": "http://h:port/", "events": ["*"]}], r"port is not a number"),
        ([{"name": "x", "url": "http://h/", "events": []}], r"events: expected a list of event names"),
        ([{"name": "x", "url": "http://h/", "events": ["opened", "promoted"]}], r"unknown event\(s\) promoted; known: opened"),
        ([{"name": "x", "url": "http://h/", "events": ["*"], "format": "teams"}], r"format: expected one of json, slack"),
        ([{"name": "x", "url": "http://h/", "events": ["*"], "timeout": 0}], r"timeout: expected a number from 0.1 to 120"),
        ([{"name": "x", "url": "http://h/", "events": ["*"], "max_attempts": 2.5}], r"max_attempts: expected a whole number"),
        ([{"name": "x", "url": "http://h/", "events": ["*"], "secret": "a", "secret_env": "B"}], r"secret or secret_env, not"),
        (
            [{"name": "x", "url": "http://h/", "events": ["*"], "secret_env": "NOT_SET_ANYWHERE"}],
            r"secret_env: the environment variable NOT_SET_ANYWHERE is not set",
        ),
        ([{"name": "x", "url": "http://h/", "events": ["*"], "retries": 3}], r"unknown key\(s\) retries"),
        ([{"name": "x", "url": "http://h/", "events": ["*"]}] * 2, r"the name\(s\) x appear more than once"),
    ],
)
def test_bad_webhook_configuration_is_refused_clearly(items, message):
    with pytest.raises(webhooks.WebhookConfigError, match=message):
        webhooks.parse(items, env={})


def test_configuration_reads_the_policy_file_and_keeps_secrets_out_of_reprs(tmp_path):
    policy = tmp_path / "policy.yaml"
    hook = {
        "name": "ops",
        "url_env": "HOOK_URL",
        "events": ["applied", "apply_failed"],
        "secret_env": "HOOK_SECRET",
        "format": "slack",
    }
    policy.write_text(yaml.safe_dump({"webhooks": [hook]}))
    env = {"CHECKPOINT_POLICY_FILE": str(policy), "HOOK_URL": "https://hooks.example/T0/B0/token", "HOOK_SECRET": "s3"}
    hooks = webhooks.load(env)
    (ops,) = hooks.hooks
    assert (ops.url, ops.secret, ops.format, ops.timeout, ops.max_attempts) == (env["HOOK_URL"], "s3", "slack", 5.0, 8)
    assert hooks.subscribers("applied") == ("ops",) and hooks.subscribers("opened") == ()
    assert "token" not in repr(hooks) and "s3" not in repr(hooks)
    assert webhooks.load({}) == webhooks.Webhooks() and not webhooks.load({})
    assert [ops.delay(n) for n in (1, 2, 3, 10)] == [1.0, 2.0, 4.0, 300.0]  # capped at 5 minutes
    bad = env | {"HOOK_SECRET": ""}
    with pytest.raises(webhooks.WebhookConfigError, match="HOOK_SECRET is not set"):
        webhooks.load(bad)


def test_chat_lines_for_a_failed_check_and_an_outside_change():
    stamp = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    check = Event(
        7,
        3,
        "fraud",
        "check_failed",
        "checkpoint",
        {"check": "auc-gate", "status": "fail", "reason": "val_auc 0.91 < champion - 0.005 (0.93)"},
        stamp,
    )
    item = SimpleNamespace(target="alias:champion", version="7", title="Ship v7", author="alice", workspace="")
    message = webhooks.payload(Outgoing(None, check, item, "open", None, "Ship v7"), "https://cp.example")
    assert message["data"]["url"] == "https://cp.example/checkpoint/requests/3"
    assert message["data"]["workspace"] == "default"
    assert webhooks.describe(message) == (
        "checkpoint reported a failed check on #3 “Ship v7” (fraud v7 → alias:champion): "
        "check auc-gate is fail: val_auc 0.91 < champion - 0.005 (0.93)"
    )
    outside = Event(
        8, None, "fraud", "outside_change", "mlflow", {"target": "alias:champion", "version": "5", "previous": "7"}, stamp
    )
    message = webhooks.payload(Outgoing(None, outside, None, None, None), None)
    assert message["data"]["url"] == "/checkpoint/models/fraud/history" and message["data"]["version"] == "5"
    assert (
        webhooks.describe(message) == "mlflow saw an outside change to fraud (fraud v5 → alias:champion): "
        "alias:champion now holds v5 (was v7)"
    )
    in_b = Event(
        9, None, "fraud", "outside_change", "mlflow", {"target": "alias:champion", "version": "2", "workspace": "team-b"}, stamp
    )
    message = webhooks.payload(Outgoing(None, in_b, None, None, None), None)
    assert message["data"]["url"] == "/checkpoint/models/fraud/history?workspace=team-b"
    assert message["data"]["workspace"] == "team-b"


def test_audit_head_is_subscribed_to_by_name_only():
    from checkpoint.events import webhooks as notify

    base = {"name": "h", "url": "http://127.0.0.1:9/h"}
    assert "audit_head" not in notify.parse([{**base, "events": ["*"]}], {}).hooks[0].events
    assert "audit_head" in notify.parse([{**base, "events": ["*", "audit_head"]}], {}).hooks[0].events
    assert notify.parse([{**base, "events": ["audit_head"]}], {}).hooks[0].events == {"audit_head"}
