"""Email to people, through a real SMTP server (aiosmtpd on a loopback port): who receives what
for each event, the words and the link, a failing or absent server losing nothing and retried
by the moved clock, the digest and the "off" choice, and two instances sharing PostgreSQL
sending each message once. The store is driven directly (no MLflow needed): the rows are
written by the same ``_append`` every workflow transition goes through; test_email_flow.py
drives the whole app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from checkpoint.events.notifications import MailSender, People, Recipients, Smtp
from checkpoint.events.notifications.sender import MAX_ATTEMPTS
from checkpoint.review.policy import Policy, Rule
from checkpoint.storage import db
from checkpoint.storage.entities import EventKind, PromoteRequest
from checkpoint.storage.store import Store
from tests.support.clock import MovableClock
from tests.support.databases import migrated_database
from tests.support.race import race
from tests.support.smtp import Sink
from tests.support.stored import KEYS

PUBLIC = "https://checkpoint.example.com"
POLICY = Policy(rules=(Rule(name="fraud", models=("fraud-*",), reviewers=("dave",), groups=("ml-leads",)),))
PEOPLE = People(
    addresses={n: f"{n}@example.com" for n in ("alice", "bob", "carol", "dave", "erin", "frank", "gina")},
    groups={"ml-leads": ("erin", "frank"), "sre": ("gina",)},
)


@dataclass
class Mailroom:
    """One Checkpoint instance's store and mail sender on a shared database and clock."""

    store: Store
    sender: MailSender
    engine: sa.Engine


@pytest.fixture
def postgres_url(request, tmp_path) -> Iterator[str]:
    yield from migrated_database("postgresql", request, tmp_path)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime(2026, 12, 4, 9, 0, tzinfo=UTC))


@pytest.fixture
def rooms(sink, clock) -> Iterator:
    made: list[Mailroom] = []

    def make(url: str) -> Mailroom:
        engine = db.make_engine(url)
        store = Store(sessionmaker(engine, expire_on_commit=False), keys=KEYS, clock=clock, recipients=Recipients(POLICY, PEOPLE))
        smtp = Smtp(host="127.0.0.1", port=sink.port, sender="Checkpoint <checkpoint@example.com>", security="none")
        made.append(Mailroom(store, MailSender(store, smtp, PUBLIC, clock), engine))
        return made[-1]

    yield make
    for room in made:
        room.engine.dispose()


def open_request(
    store: Store,
    *,
    title: str = "Promote v3",
    description: str = "",
    named: tuple[str, ...] = ("bob",),
    key: str = "k1",
    model: str = "fraud-detector",
) -> PromoteRequest:
    item, created = store.open_request(
        author="alice",
        dedupe_key=key,
        event_data={"title": title},
        kind="set_alias",
        model_name=model,
        version="3",
        target="alias:champion",
        change={"kind": "set_alias", "name": model, "alias": "champion", "version": "3"},
        title=title,
        description=description,
        challenger={},
        champion=None,
        named_reviewers=list(named),
        rule_name="fraud",
    )
    assert created
    return item


def addressed(sink: Sink) -> dict[str, list[str]]:
    """Who received which subjects, by address."""
    out: dict[str, list[str]] = {}
    for received in sink.received:
        for to in received.to:
            out.setdefault(to, []).append(received.subject)
    return out


# -- who receives what -------------------------------------------------------------------


def test_each_event_reaches_the_people_it_concerns(rooms, sink, sqlite_url):
    room = rooms(sqlite_url)
    item = open_request(room.store, description="cc @carol and @sre: the latency change")
    sent = room.sender.run()
    assert len(sent.delivered) == 6 and not sent.retrying and not sent.failed
    opened = addressed(sink)
    print("opened:", opened)
    # bob named, dave listed by the rule, erin and frank through the rule's group; carol and gina mentioned.
    assert sorted(opened) == [f"{n}@example.com" for n in ("bob", "carol", "dave", "erin", "frank", "gina")]
    assert opened["bob@example.com"] == [
        f"[Checkpoint] alice asks for your review on #{item.id}: fraud-detector v3 → alias:champion"
    ]
    assert opened["carol@example.com"] == [f"[Checkpoint] alice mentioned you on #{item.id}: fraud-detector v3 → alias:champion"]
    assert "alice@example.com" not in opened  # nobody hears of their own doing

    sink.received.clear()
    room.store.add_comment(item.id, "bob", "Looks right; @gina can you check the alerts? bob@example.com")
    room.store.add_review(item.id, "dave", "approve", "fine by me, @frank", states=("open",))
    room.store.transition(item.id, ("open",), "approved", actor="dave", event=EventKind.APPROVED)
    room.store.transition(item.id, ("approved",), "applying", actor="dave", event=EventKind.APPLYING)
    room.store.transition(item.id, ("applying",), "applied", actor="dave", event=EventKind.APPLIED, data={"result": "ok"})
    assert len(room.sender.run().delivered) == 5
    later = addressed(sink)
    print("later:", later)
    assert later == {
        "alice@example.com": [
            f"[Checkpoint] bob commented on your request #{item.id}: fraud-detector v3 → alias:champion",
            f"[Checkpoint] Your request #{item.id} was approved by dave: fraud-detector v3 → alias:champion",
            f"[Checkpoint] Your request #{item.id} is applied: fraud-detector v3 → alias:champion",
        ],
        "gina@example.com": [f"[Checkpoint] bob mentioned you on #{item.id}: fraud-detector v3 → alias:champion"],
        "frank@example.com": [f"[Checkpoint] dave mentioned you on #{item.id}: fraud-detector v3 → alias:champion"],
    }
    assert room.sender.run().delivered == []  # each once


def test_rejected_failed_and_edits_reach_the_author_and_the_newly_mentioned(rooms, sink, sqlite_url):
    room = rooms(sqlite_url)
    first = open_request(room.store, named=(), key="a")
    second = open_request(room.store, named=(), key="b", description="see @carol")
    room.sender.run()
    sink.received.clear()
    room.store.transition(first.id, ("open",), "rejected", actor="bob", event=EventKind.REJECTED, reason="rejected by bob")
    room.store.transition(second.id, ("open",), "applying", actor="dave", event=EventKind.APPLYING)
    room.store.transition(
        second.id, ("applying",), "failed", actor="dave", event=EventKind.APPLY_FAILED, data={"error": "MLflow said <no>"}
    )
    # An edit names who it newly mentions (workflow.edit writes ``mentioned``): carol was already, erin is new.
    room.store.update_fields(
        second.id, actor="alice", event=EventKind.EDITED, data={"fields": ["description"], "mentioned": ["erin"]}
    )
    room.sender.run()
    got = addressed(sink)
    assert got == {
        "alice@example.com": [
            f"[Checkpoint] Your request #{first.id} was rejected by bob: fraud-detector v3 → alias:champion",
            f"[Checkpoint] Your request #{second.id} failed to apply: fraud-detector v3 → alias:champion",
        ],
        "erin@example.com": [f"[Checkpoint] alice mentioned you on #{second.id}: fraud-detector v3 → alias:champion"],
    }
    (failed,) = [r for r in sink.to("alice@example.com") if "failed" in r.subject]
    assert "MLflow said <no>" in failed.part("plain")
    assert "MLflow said &lt;no&gt;" in failed.part("html") and "<no>" not in failed.part("html")


def test_the_email_says_what_changed_links_the_request_and_escapes_what_people_typed(rooms, sink, sqlite_url):
    room = rooms(sqlite_url)
    item = open_request(room.store, title='<script>alert("t")</script> v3', named=("bob",))
    room.store.add_comment(item.id, "bob", "<img src=x onerror=alert(1)> & more\nsecond line")
    room.sender.run()
    (invite,) = sink.to("bob@example.com")
    link = f"{PUBLIC}/checkpoint/requests/{item.id}"
    text, html = invite.part("plain"), invite.part("html")
    print(text)
    assert text.splitlines()[0] == f"alice asks for your review on #{item.id}: fraud-detector v3 → alias:champion"
    assert f"Open it: {link}" in text and '<script>alert("t")</script> v3' in text
    assert f'<a href="{link}">Open request</a>' in html
    assert "<script>" not in html and "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt; v3" in html
    assert f"{PUBLIC}/checkpoint/notifications" in text and f'href="{PUBLIC}/checkpoint/notifications"' in html
    assert invite.message["From"] == "Checkpoint <checkpoint@example.com>"
    assert invite.message["To"] == "bob@example.com"
    (comment,) = sink.to("alice@example.com")
    assert "> <img src=x onerror=alert(1)> & more\n> second line" in comment.part("plain")
    assert "<img" not in comment.part("html") and "&lt;img src=x onerror=alert(1)&gt; &amp; more" in comment.part("html")


def test_an_address_from_the_sign_in_wins_and_nobody_without_an_address_gets_a_row(rooms, sink, sqlite_url):
    room = rooms(sqlite_url)
    room.store.remember_email("bob", "robert@corp.example")
    item = open_request(room.store, named=("bob", "zed"), description="@nobody-known")
    room.sender.run()
    assert sorted(addressed(sink)) == ["dave@example.com", "erin@example.com", "frank@example.com", "robert@corp.example"]
    rows, _ = room.store.list_deliveries(request_id=item.id)
    assert sorted(d.webhook for d in rows) == ["email:bob", "email:dave", "email:erin", "email:frank"]


# -- failures lose nothing ---------------------------------------------------------------


def test_a_refusing_server_is_retried_with_backoff_by_the_clock(rooms, sink, clock, sqlite_url):
    room = rooms(sqlite_url)
    sink.refuse("451 4.3.0 try again later", "421 4.7.0 busy")
    item = open_request(room.store, named=("bob",), key="r")
    first = room.sender.run()
    # dave, erin, frank, bob: the first two answers refuse, the others pass.
    assert len(first.retrying) == 2 and len(first.delivered) == 2
    assert room.sender.run().delivered == []  # not due yet: the clock has not moved
    rows = {d.id: d for d in room.store.list_deliveries(request_id=item.id)[0]}
    waiting = [rows[i] for i in first.retrying]
    assert all(d.status == "pending" and d.attempts == 1 for d in waiting)
    assert all(d.next_attempt_at == clock.now() + timedelta(seconds=10) for d in waiting)
    assert {d.last_status for d in waiting} == {451, 421} and "try again later" in " ".join(d.last_error for d in waiting)
    clock.advance(timedelta(seconds=10))
    again = room.sender.run()
    assert sorted(again.delivered) == sorted(first.retrying)
    assert sorted(r.to[0] for r in sink.received) == [f"{n}@example.com" for n in ("bob", "dave", "erin", "frank")]


def test_a_server_that_is_down_loses_nothing_and_gets_everything_once_it_is_back(rooms, sink, clock, sqlite_url):
    room = rooms(sqlite_url)
    sink.stop()
    item = open_request(room.store, named=("bob",), key="d")
    down = room.sender.run()
    assert len(down.retrying) == 4 and not down.delivered
    rows, _ = room.store.list_deliveries(request_id=item.id)
    assert all("could not send through 127.0.0.1" in d.last_error for d in rows)
    clock.advance(timedelta(seconds=10))
    assert len(room.sender.run().retrying) == 4  # still down: attempt 2, backoff doubles
    assert {d.next_attempt_at for d in room.store.list_deliveries(request_id=item.id)[0]} == {clock.now() + timedelta(seconds=20)}
    sink.start()
    clock.advance(timedelta(seconds=19))
    assert room.sender.run().delivered == []
    clock.advance(timedelta(seconds=1))
    assert len(room.sender.run().delivered) == 4
    assert len(sink.received) == 4 and {d.attempts for d in room.store.list_deliveries(request_id=item.id)[0]} == {3}


def test_a_server_that_never_comes_back_is_given_up_on_after_the_last_attempt(rooms, sink, clock, sqlite_url):
    room = rooms(sqlite_url)
    sink.stop()
    item = open_request(room.store, named=(), key="g")
    for _ in range(MAX_ATTEMPTS - 1):
        assert room.sender.run().retrying
        clock.advance(timedelta(hours=1))
    final = room.sender.run()
    assert len(final.failed) == 3 and not final.retrying
    rows, _ = room.store.list_deliveries(request_id=item.id)
    assert {(d.status, d.attempts) for d in rows} == {("failed", MAX_ATTEMPTS)}
    assert all(d.last_error.startswith(f"gave up after {MAX_ATTEMPTS} attempts") for d in rows)


# -- choices: off and digest -------------------------------------------------------------


def test_off_sends_nothing_and_a_digest_collects_an_hour_into_one_message(rooms, sink, clock, sqlite_url):
    room = rooms(sqlite_url)
    room.store.set_mail_mode("erin", "off")
    room.store.set_mail_mode("dave", "hourly")
    first = open_request(room.store, named=(), key="1")
    clock.advance(timedelta(minutes=20))
    second = open_request(room.store, named=(), key="2", title="Promote <v4>")
    room.sender.run()
    assert sorted(addressed(sink)) == ["frank@example.com"]  # erin turned it off; dave waits for his digest
    assert len(sink.to("frank@example.com")) == 2
    clock.advance(timedelta(minutes=39))
    assert room.sender.run().delivered == []
    clock.advance(timedelta(minutes=1))  # an hour after the first event dave was told of
    assert len(room.sender.run().delivered) == 2
    (digest,) = sink.to("dave@example.com")
    assert digest.subject == "[Checkpoint] 2 updates on promote requests"
    text = digest.part("plain")
    assert f"#{first.id}" in text and f"#{second.id}" in text and "Promote <v4>" in text
    assert "Promote &lt;v4&gt;" in digest.part("html")
    # Leaving the digest makes what waits due now.
    third = open_request(room.store, named=(), key="3")
    assert room.sender.run().delivered and not sink.to("dave@example.com")[1:]
    room.store.set_mail_mode("dave", "each")
    assert len(room.sender.run().delivered) == 1
    assert f"#{third.id}" in sink.to("dave@example.com")[1].subject


def test_turning_email_off_settles_what_was_queued_without_sending_it(rooms, sink, sqlite_url):
    room = rooms(sqlite_url)
    item = open_request(room.store, named=(), key="o")
    room.store.set_mail_mode("erin", "off")
    room.sender.run()
    assert "erin@example.com" not in addressed(sink)
    (row,) = [d for d in room.store.list_deliveries(request_id=item.id)[0] if d.webhook == "email:erin"]
    assert (row.status, row.last_error) == ("failed", "not sent: erin turned email off")


# -- two instances, one database ---------------------------------------------------------


def test_two_instances_on_postgresql_send_each_message_once(postgres_url, rooms, sink, clock):
    one, two = rooms(postgres_url), rooms(postgres_url)
    sink.refuse("451 4.3.0 later", "451 4.3.0 later", "451 4.3.0 later")
    items = [open_request(one.store if i % 2 else two.store, named=("bob",), key=f"p{i}") for i in range(6)]
    for _ in range(3):
        race(one.sender.run, two.sender.run, one.sender.run, two.sender.run)
        clock.advance(timedelta(seconds=40))
    got = addressed(sink)
    assert sorted(got) == [f"{n}@example.com" for n in ("bob", "dave", "erin", "frank")]
    for address, subjects in got.items():
        assert sorted(subjects) == sorted(set(subjects)) and len(subjects) == len(items), (address, subjects)
    assert sink.attempts == 4 * len(items) + 3  # every row taken by one sender per attempt: three refused, retried once
    rows = [d for i in items for d in one.store.list_deliveries(request_id=i.id)[0]]
    assert {d.status for d in rows} == {"delivered"} and len(rows) == 24


# -- hostile text ------------------------------------------------------------------------


class _Markup(HTMLParser):
    """The elements, attributes and text an HTML part really holds, as a mail client parses it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


TEMPLATE_TAGS = {"html", "body", "div", "p", "strong", "span", "blockquote", "a"}


def test_markup_in_a_model_name_title_description_comment_and_review_stays_text(rooms, sink, sqlite_url):
    room = rooms(sqlite_url)
    model = 'fraud-<b onmouseover="alert(1)">x</b>'
    title = "<script>alert(2)</script> & \"retrain\" 'now'"
    item = open_request(
        room.store, model=model, title=title, description="<iframe src=javascript:alert(3)></iframe> cc @carol", named=("bob",)
    )
    room.store.add_comment(item.id, "bob", '<a href="javascript:alert(4)">click</a> &amp; <style>*{display:none}</style>')
    room.store.add_review(item.id, "dave", "approve", "<svg onload=alert(5)>", states=("open",))
    room.store.transition(item.id, ("open",), "approved", actor="dave", event=EventKind.APPROVED)
    room.sender.run()
    received = list(sink.received)
    # The invitations (bob named; dave, erin, frank by the rule), carol's mention, alice's comment and approval.
    invited = ("alice", "alice", "bob", "carol", "dave", "erin", "frank")
    assert sorted(r.to[0] for r in received) == [f"{n}@example.com" for n in invited]
    change = f"{model} v3 → alias:champion"
    for message in received:
        text, html = message.part("plain"), message.part("html")
        # The text part is plain: what people typed as they typed it, no entity anywhere.
        assert change in text and f"Request: “{title}”" in text, text
        assert not re.search(r"&(lt|gt|amp|quot|#\d+);", text.replace("&amp; <style>", "")), text
        # The HTML part: only the template's own elements; the one link, to the request; no handler attribute.
        parsed = _Markup()
        parsed.feed(html)
        assert {tag for tag, _ in parsed.tags} <= TEMPLATE_TAGS, parsed.tags
        for tag, attrs in parsed.tags:
            assert not [name for name, _ in attrs if name.startswith("on")], (tag, attrs)
            if tag == "a":
                assert dict(attrs)["href"].startswith(f"{PUBLIC}/checkpoint/"), attrs
        # ... and a reader sees the same words as in the text part, escaped once (not twice).
        shown = "".join(parsed.text)
        assert change in shown and title in shown, shown
        assert "<iframe" not in html and "javascript:alert(3)" not in text + html  # the description is never quoted
    (commented,) = [r for r in received if "commented" in r.subject]
    assert '> <a href="javascript:alert(4)">click</a> &amp; <style>' in commented.part("plain")
    assert "&lt;a href=&#34;javascript:alert(4)&#34;&gt;click&lt;/a&gt; &amp;amp; &lt;style&gt;" in commented.part("html")
    (approved,) = [r for r in received if "approved" in r.subject]
    assert "<svg" not in approved.part("html") and "by dave" in approved.subject
    assert all(r.subject.startswith("[Checkpoint] ") and change in r.subject for r in received)


# -- what people typed never becomes a header ---------------------------------------------


def test_a_line_break_in_a_model_name_or_a_stored_address_never_becomes_a_header(rooms, sink, clock, sqlite_url):
    """A model name with CR/LF gives a one-line subject and no extra recipient; an address stored
    with a line break (before sign-in headers were checked) makes a letter no message can carry:
    it is dropped and recorded at once, never retried, and the other letters go out."""
    room = rooms(sqlite_url)
    room.store.remember_email("bob", "bob@example.com\r\nBcc: eve@example.com")
    item, created = room.store.open_request(
        author="alice",
        dedupe_key="crlf",
        event_data={"title": "t"},
        kind="set_alias",
        model_name="fraud-x\r\nBcc: eve@example.com",
        version="3",
        target="alias:champion",
        change={},
        title="t\r\nX-Evil: 1",
        description="",
        challenger={},
        champion=None,
        named_reviewers=["bob"],
        rule_name="fraud",
    )
    assert created
    sent = room.sender.run()
    assert len(sent.delivered) == 3 and len(sent.failed) == 1 and not sent.retrying
    assert sorted(addressed(sink)) == ["dave@example.com", "erin@example.com", "frank@example.com"]
    for received in sink.received:
        head = received.message.as_bytes().split(b"\n\n", 1)[0]
        names = {line.split(b":", 1)[0].lower() for line in head.splitlines() if not line[:1].isspace()}
        assert not names & {b"bcc", b"x-evil"} and "eve@example.com" not in received.to, head
        line = f"[Checkpoint] alice asks for your review on #{item.id}: fraud-x Bcc: eve@example.com v3"
        assert received.subject.startswith(line)
    rows, _ = room.store.list_deliveries(request_id=item.id)
    (bob,) = [d for d in rows if d.webhook == "email:bob"]
    assert bob.status == "failed" and bob.last_error.startswith("dropped: the message could not be built"), bob
    clock.advance(timedelta(days=1))
    again = room.sender.run()
    assert again.delivered == [] and again.failed == [] and again.retrying == []
