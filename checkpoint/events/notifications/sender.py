"""The mail half of the outbox's delivery loop: claim due letters, hand each to SMTP, record
the outcome on every row it carries.

Runs on the background thread of every worker (never inside an HTTP request). A row is claimed
by one sender (a conditional UPDATE), so two instances never send the same row; a crash between
the server's "250" and the row being marked sends it again (at least once), under the same
Message-ID, which mail systems use to drop the copy. A failure is tried again after
``BACKOFF * 2**(attempts-1)`` seconds (at most ``MAX_BACKOFF``), by the injected clock, up to
``MAX_ATTEMPTS``; a 5xx refusal of the address is final at once.
"""

from __future__ import annotations

import email.errors
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from checkpoint.clock import SYSTEM, Clock
from checkpoint.events.notifications.message import compose
from checkpoint.events.notifications.smtp import SendFailed, Smtp, send
from checkpoint.events.webhooks.sender import Round
from checkpoint.storage.mail import Letter
from checkpoint.storage.store import Store

log = logging.getLogger("checkpoint.notify")  # the webhooks' logger: one name for the outbox

BACKOFF, MAX_BACKOFF, MAX_ATTEMPTS = 10.0, 3600.0, 12
LETTERS_PER_ROUND, ROUND_SECONDS = 50, 30.0
SENT = 250  # SMTP's "OK", recorded as the rows' last_status


def delay(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt."""
    return min(BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


@dataclass
class MailSender:
    store: Store
    smtp: Smtp
    public_url: str | None = None
    clock: Clock = SYSTEM
    interval: float = 5.0  # how often the background thread looks for retries and digests that came due

    @property
    def lease(self) -> float:
        return 2 * self.smtp.timeout + 30.0

    def run(self) -> Round:
        """Send every due letter, a few at a time, until none is left or the round is long enough."""
        done = Round()
        started = time.monotonic()
        for _ in range(LETTERS_PER_ROUND):
            letters = self.store.claim_mail(self.lease, limit=4)
            if not letters:
                break
            for letter in letters:
                getattr(done, self._send(letter)).extend(letter.ids)
            if time.monotonic() - started > ROUND_SECONDS:
                break
        return done

    def _send(self, letter: Letter) -> str:
        attempts = max(i.outgoing.delivery.attempts for i in letter.items)
        try:
            message = compose(letter, self.smtp.sender, self.public_url)
        except (ValueError, TypeError, LookupError, email.errors.MessageError) as exc:
            # Stored data no message can carry (an address with a line break, from before it was
            # checked): trying again would fail the same way, and must not stop the other letters.
            log.warning("email to %s: dropped, the message could not be built: %s", letter.person, exc)
            self.store.mail_done(letter.ids, None, f"dropped: the message could not be built ({type(exc).__name__}: {exc})"[:500])
            return "failed"
        try:
            send(self.smtp, message)
        except SendFailed as exc:
            if not exc.transient or attempts >= MAX_ATTEMPTS:
                log.warning("email to %s: failed for good after %d attempts: %s", letter.person, attempts, exc)
                self.store.mail_done(letter.ids, exc.code, f"gave up after {attempts} attempts: {exc}")
                return "failed"
            wait = delay(attempts)
            log.info("email to %s: attempt %d failed (%s); next in %.0f s", letter.person, attempts, exc, wait)
            self.store.mail_done(letter.ids, exc.code, str(exc), retry_at=self.clock.now() + timedelta(seconds=wait))
            return "retrying"
        self.store.mail_done(letter.ids, SENT)
        return "delivered"
