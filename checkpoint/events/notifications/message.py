"""The email a letter becomes: a subject, one line per event saying what changed, the link to
the request, plain text and HTML (``templates/``, autoescaped: nothing a user typed reaches the
HTML unescaped). Built only from stored rows (``Outgoing``), so a retry sends the same words.
"""

from __future__ import annotations

import email.policy
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from checkpoint import urls
from checkpoint.events.notifications.recipients import AUTHOR, AWAITED, MENTIONED
from checkpoint.storage.entities import EventKind, Outgoing
from checkpoint.storage.mail import Item, Letter

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
# Headers folded only past RFC 5322's 998: folding a subject with "→" in it doubles a space.
_POLICY = email.policy.default.clone(max_line_length=998)
PREFERENCES_PATH = "/checkpoint/notifications"
QUOTE_MAX = 2000  # characters of a comment or an error quoted in the email
WHY = {
    AWAITED: "you are a reviewer this request awaits",
    AUTHOR: "you opened this request",
    MENTIONED: "you were mentioned",
}


@dataclass(frozen=True)
class Entry:
    """One event as the email tells it."""

    line: str  # what changed, in one line
    change: str  # "fraud-detector v3 → alias:champion"
    title: str
    url: str
    quote: str  # a comment or an error, or ""
    why: str
    state: str


def change_of(outgoing: Outgoing) -> str:
    request = outgoing.request
    if request is None:
        return outgoing.event.model_name
    version = f" v{request.version}" if request.version else ""
    return f"{request.model_name}{version} → {request.target}"


def line(item: Item) -> str:
    """ "alice asks for your review on #12 “…”: fraud-detector v3 → alias:champion"."""
    outgoing, reason = item.outgoing, item.reason
    event, actor = outgoing.event, outgoing.event.actor
    number = f"#{event.request_id}"
    by = "" if actor in ("checkpoint", "") else f" by {actor}"
    kind = event.kind
    if reason == MENTIONED:
        text = f"{actor} mentioned you on {number}"
    elif kind == EventKind.OPENED:
        text = f"{actor} asks for your review on {number}"
    elif kind == EventKind.APPROVED:
        text = f"your request {number} was approved{by}"
    elif kind == EventKind.REJECTED:
        text = f"your request {number} was rejected{by}"
    elif kind == EventKind.APPLIED:
        text = f"your request {number} is applied"
    elif kind == EventKind.APPLY_FAILED:
        text = f"your request {number} failed to apply"
    elif kind == EventKind.COMMENTED:
        text = f"{actor} commented on your request {number}"
    else:
        text = f"{number}: {kind.replace('_', ' ')}{by}"
    text = f"{text}: {change_of(outgoing)}"
    return "Y" + text[1:] if text.startswith("your ") else text  # a user name keeps its own spelling


def _quote(outgoing: Outgoing) -> str:
    data = outgoing.event.data if isinstance(outgoing.event.data, dict) else {}
    text = outgoing.comment or data.get("comment") or data.get("error") or ""
    text = str(text)
    return text if len(text) <= QUOTE_MAX else text[: QUOTE_MAX - 1] + "…"


def entry(item: Item, public_url: str | None) -> Entry:
    outgoing = item.outgoing
    event = outgoing.event
    workspace = outgoing.request.workspace if outgoing.request else ""
    return Entry(
        line=line(item),
        change=change_of(outgoing),
        title=outgoing.title or (outgoing.request.title if outgoing.request else ""),
        url=urls.request_url(public_url, event.request_id, event.model_name, workspace),
        quote=_quote(outgoing),
        why=WHY.get(item.reason, "you asked for these emails"),
        state=outgoing.state or "",
    )


def one_line(text: str) -> str:
    """``text`` for a header: every control character (CR, LF, tab, NUL, Unicode line and
    paragraph separators...) a space, runs of spaces one. A model name or a title holding CR/LF
    must not start a header of its own (``Bcc:``)."""
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    return " ".join(cleaned.split())


def compose(letter: Letter, sender: str, public_url: str | None) -> EmailMessage:
    """The message for ``letter`` (one event, or a digest of several), from ``sender``."""
    entries = [entry(i, public_url) for i in letter.items]
    digest = len(entries) > 1
    if digest:
        subject = f"[Checkpoint] {len(entries)} updates on promote requests"
    else:
        subject = f"[Checkpoint] {entries[0].line}"
    context = {
        "entries": entries,
        "digest": digest,
        "person": letter.person,
        "preferences": urls.link(public_url, PREFERENCES_PATH),
    }
    message = EmailMessage(policy=_POLICY)
    message["Subject"] = one_line(subject)[:250]
    message["From"] = sender
    message["To"] = letter.address
    message["Date"] = format_datetime(letter.items[-1].outgoing.event.created_at)
    # The same id on every attempt of this letter: a mail system that sees it twice keeps one.
    message["Message-ID"] = make_msgid(idstring=letter.ids[0], domain="checkpoint")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_TEMPLATES.get_template("email.txt").render(context))
    message.add_alternative(_TEMPLATES.get_template("email.html").render(context), subtype="html")
    return message
