"""The demo's mailbox (checkpoint/demo/mailbox.py): Checkpoint's own SMTP code hands it a real
message over a loopback socket; it keeps the .eml and prints who got what and the link."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

from checkpoint.demo.mailbox import Mailbox
from checkpoint.events.notifications.smtp import Smtp, send


def test_the_mailbox_keeps_each_email_and_prints_the_line_and_the_link(tmp_path):
    said: list[str] = []
    box = Mailbox(tmp_path / "mail", said.append).start()
    try:
        message = EmailMessage(policy=email.policy.default.clone(max_line_length=998))  # as message.py builds it
        message["Subject"] = "[Checkpoint] alice asks for your review on #3: fraud-detector v3 → alias:champion"
        message["From"], message["To"] = "checkpoint@example.com", "bob@example.com"
        message.set_content("alice asks ...\n.leading dot kept\n\nOpen it: http://127.0.0.1:5000/checkpoint/requests/3\n")
        message.add_alternative("<p>html</p>", subtype="html")
        send(Smtp(host="127.0.0.1", port=box.port, sender="checkpoint@example.com", security="none"), message)
    finally:
        box.stop()
    saved = tmp_path / "mail" / "0001.eml"
    assert said == [
        "email to bob@example.com: [Checkpoint] alice asks for your review on #3: fraud-detector v3 → alias:champion",
        f"  http://127.0.0.1:5000/checkpoint/requests/3  (saved as {saved})",
    ]
    assert b"\n.leading dot kept" in saved.read_bytes().replace(b"\r\n", b"\n")


def test_a_mailbox_never_started_stops_at_once(tmp_path):
    box = Mailbox(tmp_path / "mail", print)
    box.stop()
