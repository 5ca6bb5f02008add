"""Email to people about promote requests (issue 17 §2), sent from the outbox webhooks use.

``people`` (the policy file's ``people:`` and ``groups:``), ``recipients`` (who hears of which
event: the Store's hook, run in the event's transaction, storage/mail.py writes the rows),
``message`` (plain text + HTML from ``templates/``), ``smtp`` (the ``CHECKPOINT_SMTP_*``
server, stdlib smtplib) and ``sender`` (the background loop: claim, send, retry with backoff).
docs/notifications.md says what a person receives and how they turn it off.
"""

from checkpoint.events.notifications.people import People
from checkpoint.events.notifications.people import parse as parse_people
from checkpoint.events.notifications.recipients import Recipients
from checkpoint.events.notifications.sender import MailSender
from checkpoint.events.notifications.smtp import SECURITY, Smtp

__all__ = ["SECURITY", "MailSender", "People", "Recipients", "Smtp", "parse_people"]
