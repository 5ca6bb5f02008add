"""Email to people, the pure parts: the policy's ``people:``/``groups:`` checked key by key, the
mentions a text makes, who hears of each event (the recipients hook), the SMTP settings'
refusals, and the sign-in's groups read from the policy where the identity carries none."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import pytest

from checkpoint import identity
from checkpoint.errors import ConfigError
from checkpoint.events.notifications import People, Recipients, parse_people
from checkpoint.events.notifications.message import compose
from checkpoint.events.notifications.sender import MAX_BACKOFF, delay
from checkpoint.policy_file import from_env
from checkpoint.review.mentions import mentioned, newly_mentioned
from checkpoint.review.policy import Policy, Rule
from checkpoint.settings import Settings
from checkpoint.storage.entities import Delivery, Event, Outgoing, PromoteRequest
from checkpoint.storage.mail import Happening, Item, Letter

GOOD = {"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001", "CHECKPOINT_PUBLIC_URL": "https://cp.example.com"}
SMTP = {"CHECKPOINT_SMTP_HOST": "smtp.example.com", "CHECKPOINT_SMTP_FROM": "checkpoint@example.com"}


# -- people: and groups: -----------------------------------------------------------------


def test_people_and_groups_are_read_and_expanded():
    people = parse_people({"bob": "bob@example.com", "dave": " dave@corp.example.org "}, {"ml-leads": ["bob", "dave", "bob"]})
    assert people.address("dave") == "dave@corp.example.org"
    assert people.members("ml-leads") == ("bob", "dave")
    assert people.expand(["ml-leads", "erin", "bob"]) == ("bob", "dave", "erin")
    assert people.groups_of("dave") == frozenset({"ml-leads"}) and people.groups_of("zed") == frozenset()


@pytest.mark.parametrize(
    ("people", "groups", "message"),
    [
        (["bob"], None, "people: expected a mapping of name: address, got list"),
        ({"bob": "bob"}, None, "people.bob: expected an email address such as bob@example.com, got 'bob'"),
        ({"bob": "Bob <bob@example.com>"}, None, "people.bob: expected an email address"),
        ({"bob": 7}, None, "people.bob: expected an email address"),
        ({"@bob": "bob@example.com"}, None, "people.@bob: write the name without the @"),
        ({" bob": "bob@example.com"}, None, "people. bob: expected a user name"),
        (None, {"ml-leads": "bob"}, "groups.ml-leads: expected a list of user names"),
        (None, {"ml-leads": []}, "groups.ml-leads: expected a list of user names"),
        (None, {"ml-leads": ["bob", 3]}, r"groups.ml-leads\[1\]: expected a user name"),
        ({"ops": "ops@example.com"}, {"ops": ["bob"]}, "groups.ops: ops is also a person under people:"),
        (None, {"a": ["b"], "b": ["c"]}, "groups: a group may list people only, not groups \\(a lists b\\)"),
        (None, ["ml-leads"], "groups: expected a mapping of group: \\[names\\], got list"),
    ],
)
def test_a_bad_people_or_groups_entry_names_its_key(people, groups, message):
    with pytest.raises(ConfigError, match=message):
        parse_people(people, groups)


def test_the_policy_file_carries_people(tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("people:\n  bob: bob@example.com\ngroups:\n  ml-leads: [bob]\n")
    loaded = from_env({**GOOD, "CHECKPOINT_POLICY_FILE": str(policy)})
    assert loaded.people == People({"bob": "bob@example.com"}, {"ml-leads": ("bob",)})
    policy.write_text("people:\n  bob: not-an-address\n")
    with pytest.raises(ConfigError, match="people.bob"):
        from_env({**GOOD, "CHECKPOINT_POLICY_FILE": str(policy)})


# -- mentions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("@bob please look", ("bob",)),
        ("thanks @bob. And @ml-leads, @dave_k!", ("bob", "ml-leads", "dave_k")),
        ("write to bob@example.com or a.b@c", ()),
        ("(@carol) @carol again", ("carol",)),
        ("an @ alone, @@double", ()),
        ("", ()),
        (None, ()),
    ],
)
def test_mentions(text, names):
    assert mentioned(text) == names


def test_an_edit_mentions_only_the_new_names():
    assert newly_mentioned("cc @bob", "cc @bob and @carol") == ("carol",)
    assert newly_mentioned("cc @bob", "cc bob") == ()


# -- who hears of what -------------------------------------------------------------------

POLICY = Policy(rules=(Rule(name="fraud", models=("fraud-*",), reviewers=("dave",), groups=("ml-leads",)),))
PEOPLE = People({"bob": "bob@example.com", "carol": "carol@example.com"}, {"ml-leads": ("erin", "alice")})
NOW = datetime(2026, 12, 4, tzinfo=UTC)


def request(**changes) -> PromoteRequest:
    fields = {
        "id": 7,
        "kind": "set_alias",
        "model_name": "fraud-detector",
        "version": "3",
        "target": "alias:champion",
        "change": {},
        "title": "Promote v3",
        "description": "",
        "author": "alice",
        "state": "open",
        "state_reason": None,
        "challenger": {},
        "champion": None,
        "created_at": NOW,
        "updated_at": NOW,
        "applied_at": None,
        "apply_result": None,
        "named_reviewers": ("bob",),
        **changes,
    }
    return PromoteRequest(**fields)


def who(kind: str, actor: str = "alice", data: dict | None = None, comment: str | None = None, **changes) -> list[tuple]:
    found = Recipients(POLICY, PEOPLE)(Happening(kind, actor, data or {}, request(**changes), comment))
    return [(r.person, r.address, r.reason) for r in found]


def test_opening_awaits_the_named_and_the_rule_s_reviewers_and_groups_but_not_the_author():
    assert who("opened", description="cc @carol") == [
        ("bob", "bob@example.com", "awaited"),
        ("dave", None, "awaited"),
        ("erin", None, "awaited"),
        ("carol", "carol@example.com", "mentioned"),
    ]


def test_a_rule_listing_nobody_awaits_only_the_named():
    assert who("opened", model_name="other", named_reviewers=()) == []
    assert who("opened", model_name="other") == [("bob", "bob@example.com", "awaited")]


def test_a_batch_emails_only_those_every_change_lets_approve():
    """A batch's second change under a rule listing carol and dave: erin (the first rule's group)
    and bob (named) could approve the first change only, carol the second only: dave is asked."""
    policy = Policy(rules=(*POLICY.rules, Rule(name="strict", models=("strict-*",), reviewers=("carol", "dave"))))
    parts = [
        {
            "change": {"kind": "set_alias", "name": "fraud-detector", "alias": "champion", "version": "3"},
            "target": "alias:champion",
        },
        {"change": {"kind": "set_alias", "name": "strict-x", "alias": "champion", "version": "2"}, "target": "alias:champion"},
    ]
    found = Recipients(policy, PEOPLE)(Happening("opened", "alice", {}, request(kind="batch", changes=tuple(parts)), None))
    assert [(r.person, r.reason) for r in found] == [("dave", "awaited")]
    alone = Recipients(policy, PEOPLE)(Happening("opened", "alice", {}, request(), None))
    assert [r.person for r in alone] == ["bob", "dave", "erin"]  # the first change alone: the control


@pytest.mark.parametrize("kind", ["approved", "rejected", "applied", "apply_failed"])
def test_decisions_reach_the_author_unless_they_made_them(kind):
    assert who(kind, actor="bob") == [("alice", None, "author")]
    assert who(kind, actor="alice") == []


@pytest.mark.parametrize("kind", ["review_approved", "withdrawn", "edited", "approvals_dismissed", "check_failed"])
def test_other_events_reach_nobody_without_a_mention(kind):
    assert who(kind, actor="bob") == []


def test_comments_reach_the_author_and_the_mentioned_and_groups_expand():
    assert who("commented", actor="bob", comment="@ml-leads and @bob: see") == [
        ("alice", None, "author"),
        ("erin", None, "mentioned"),
        ("alice", None, "mentioned"),
    ]
    assert who("review_rejected", actor="dave", data={"comment": "no, @carol knows why"}) == [
        ("carol", "carol@example.com", "mentioned")
    ]
    assert who("edited", data={"mentioned": ["carol"]}) == [("carol", "carol@example.com", "mentioned")]


def test_events_without_a_request_reach_nobody():
    assert Recipients(POLICY, PEOPLE)(Happening("outside_change", "mlflow", {}, None)) == []


def test_retries_back_off_doubling_to_a_cap():
    assert [delay(n) for n in (1, 2, 3, 4)] == [10.0, 20.0, 40.0, 80.0]
    assert delay(30) == MAX_BACKOFF


# -- settings ----------------------------------------------------------------------------


def test_no_host_means_no_email_and_a_host_gets_defaults():
    assert Settings.from_env(GOOD).smtp_host is None
    got = Settings.from_env({**GOOD, **SMTP})
    assert (got.smtp_host, got.smtp_port, got.smtp_security, got.smtp_from) == (
        "smtp.example.com",
        None,
        "starttls",
        "checkpoint@example.com",
    )
    got = Settings.from_env({**GOOD, **SMTP, "CHECKPOINT_SMTP_SECURITY": "TLS", "CHECKPOINT_SMTP_PORT": "2465"})
    assert (got.smtp_security, got.smtp_port) == ("tls", 2465)
    creds = {"CHECKPOINT_SMTP_USERNAME": "cp", "CHECKPOINT_SMTP_PASSWORD": "pass word"}
    got = Settings.from_env({**GOOD, **SMTP, **creds})
    assert (got.smtp_username, got.smtp_password) == ("cp", "pass word") and "pass word" not in repr(got)
    loopback = {**SMTP, "CHECKPOINT_SMTP_HOST": "127.0.0.1", "CHECKPOINT_SMTP_SECURITY": "none"}
    assert Settings.from_env({**GOOD, **loopback, **creds}).smtp_security == "none"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHECKPOINT_SMTP_FROM": "cp@example.com"}, "CHECKPOINT_SMTP_FROM set without CHECKPOINT_SMTP_HOST"),
        ({**SMTP, "CHECKPOINT_SMTP_SECURITY": "ssl"}, "CHECKPOINT_SMTP_SECURITY='ssl' is not one of none, starttls, tls"),
        ({**SMTP, "CHECKPOINT_SMTP_PORT": "smtp"}, "CHECKPOINT_SMTP_PORT='smtp' is not a number"),
        ({**SMTP, "CHECKPOINT_SMTP_PORT": "70000"}, "CHECKPOINT_SMTP_PORT='70000' is out of range"),
        ({**SMTP, "CHECKPOINT_SMTP_USERNAME": "cp"}, "CHECKPOINT_SMTP_PASSWORD is not set"),
        ({**SMTP, "CHECKPOINT_SMTP_PASSWORD": "x"}, "CHECKPOINT_SMTP_USERNAME is not set"),
        (
            {**SMTP, "CHECKPOINT_SMTP_SECURITY": "none", "CHECKPOINT_SMTP_USERNAME": "cp", "CHECKPOINT_SMTP_PASSWORD": "x"},
            "CHECKPOINT_SMTP_SECURITY=none with a password would send it unencrypted to smtp.example.com",
        ),
        ({"CHECKPOINT_SMTP_HOST": "smtp.example.com"}, "CHECKPOINT_SMTP_FROM is not set"),
        ({**SMTP, "CHECKPOINT_SMTP_FROM": "checkpoint"}, "CHECKPOINT_SMTP_FROM='checkpoint' is not an email address"),
    ],
)
def test_a_bad_smtp_setting_names_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**GOOD, **env})


def test_a_host_without_a_public_url_is_refused():
    with pytest.raises(ConfigError, match="CHECKPOINT_SMTP_HOST is set but CHECKPOINT_PUBLIC_URL is not"):
        Settings.from_env({"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001", **SMTP})


# -- groups for sign-ins that carry none -------------------------------------------------


def test_the_policy_s_groups_stand_in_where_the_sign_in_carries_none(tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("groups:\n  ml-leads: [bob]\n")
    settings = Settings.from_env({**GOOD, "CHECKPOINT_POLICY_FILE": str(policy)}).with_policy()
    auth = identity.from_settings(settings)
    assert auth.user({"HTTP_AUTHORIZATION": "Basic Ym9iOng="}).groups == frozenset({"ml-leads"})  # bob:x
    assert auth.user({}).groups == frozenset()  # anonymous
    rule = Rule(name="leads", groups=("ml-leads",))
    assert Policy(rules=(rule,)).may_review(auth.user({"HTTP_AUTHORIZATION": "Basic Ym9iOng="}), "alice") is None
    header = Settings.from_env(
        {**GOOD, "CHECKPOINT_POLICY_FILE": str(policy), "CHECKPOINT_AUTH": "header", "CHECKPOINT_TRUSTED_PROXIES": "127.0.0.1/32"}
    ).with_policy()
    sso = identity.from_settings(header)
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_USER": "bob"}
    assert sso.user(environ).groups == frozenset({"ml-leads"})
    assert sso.user({**environ, "HTTP_X_FORWARDED_GROUPS": "sre"}).groups == frozenset({"sre"})  # the sign-in's own win


def test_a_webhook_may_not_take_the_outbox_s_name_for_email():
    from checkpoint.events.webhooks import parse

    with pytest.raises(ConfigError, match="names starting with email: are the outbox's own"):
        parse([{"name": "email:bob", "url": "http://127.0.0.1:9/hook", "events": ["*"]}], {})


def test_in_mlflow_mode_only_people_who_may_read_the_model_are_emailed():
    """An @mention, a named reviewer or a group must not carry a request to someone MLflow does
    not let read the model: the hook asks (user, model, workspace) for each."""
    asked: list[tuple[str, str, str]] = []

    def may_read(name: str, model: str, workspace: str) -> bool:
        asked.append((name, model, workspace))
        return name != "carol"

    hook = Recipients(POLICY, PEOPLE, may_read)
    happening = Happening("opened", "alice", {}, request(description="cc @carol @bob", workspace="team-a"))
    got = [(r.person, r.reason) for r in hook(happening)]
    assert got == [("bob", "awaited"), ("dave", "awaited"), ("erin", "awaited"), ("bob", "mentioned")]
    assert ("carol", "fraud-detector", "team-a") in asked
    comment = Happening("commented", "bob", {}, request(), "@carol look")
    assert [r.person for r in hook(comment)] == ["alice"]


@pytest.mark.parametrize(
    "model",
    [
        "fraud\r\nBcc: eve@example.com",
        "fraud\nBcc: eve@example.com",
        "fraud\rX-Evil: 1",
        "fraud\x00\u2028Bcc: x",
        "fraud\x85Bcc: y",
    ],
)
def test_a_line_break_in_a_model_name_never_starts_a_header(model):
    event = Event(id=1, request_id=7, model_name=model, actor="bob", kind="commented", data={}, created_at=NOW)
    delivery = Delivery("d1", 1, "email:alice", 7, "pending", 1, NOW, None, "", NOW, None)
    outgoing = Outgoing(delivery, event, request(model_name=model), "open", "hi")
    message = compose(Letter("alice", "alice@example.com", (Item(outgoing, "author"),)), "cp@example.com", None)
    head = message.as_bytes().split(b"\n\n", 1)[0]
    names = [line.split(b":", 1)[0] for line in head.splitlines() if not line[:1].isspace()]
    assert names == [b"Subject", b"From", b"To", b"Date", b"Message-ID", b"Auto-Submitted", b"MIME-Version", b"Content-Type"], (
        head
    )
    assert message["Subject"].startswith("[Checkpoint] bob commented on your request #7: fraud ")
    assert not any(ord(c) < 32 for c in message["Subject"])


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("a@x.example", "a@x.example"),
        (" a@x.example ", "a@x.example"),
        ("a@x.example\r\nBcc: eve@x.example", None),
        ("a@x.example, eve@x.example", None),
        ("Alice <a@x.example>", None),
        ("a@x.example\x00", None),
        ("not-an-address", None),
    ],
)
def test_header_mode_uses_the_email_header_only_when_it_is_one_address(header, kept):
    proxy = (ipaddress.ip_network("127.0.0.1/32"),)
    auth = identity.HeaderAuth(proxy, "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", frozenset(), frozenset())
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_USER": "alice", "HTTP_X_FORWARDED_EMAIL": header}
    assert auth.user(environ).email == kept
