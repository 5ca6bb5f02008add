"""Handing one message to the SMTP server (stdlib ``smtplib``): plain, STARTTLS or implicit TLS,
with login when credentials are configured. A failure says whether trying again may help:
a refused or dropped connection and 4xx answers are transient; a 5xx refusal of the recipient
is not (the address will not start working by itself).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checkpoint.settings import Settings

NONE, STARTTLS, TLS = "none", "starttls", "tls"
SECURITY = (NONE, STARTTLS, TLS)
DEFAULT_PORTS = {NONE: 25, STARTTLS: 587, TLS: 465}
TIMEOUT = 30.0  # seconds for connecting and for each SMTP answer


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int
    sender: str  # the From address
    security: str = STARTTLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = TIMEOUT
    # Trust store for STARTTLS/TLS; None: the system's (tests pass their own CA).
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Smtp | None:
        """The configured server, or None (no ``CHECKPOINT_SMTP_HOST``: no email)."""
        if not settings.smtp_host:
            return None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port or DEFAULT_PORTS[settings.smtp_security],
            sender=settings.smtp_from or "",
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


class SendFailed(Exception):
    def __init__(self, message: str, *, transient: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


def send(smtp: Smtp, message: EmailMessage) -> None:
    """Deliver ``message`` to the server or raise :class:`SendFailed`."""
    context = smtp.ssl_context or ssl.create_default_context()
    try:
        client: smtplib.SMTP
        if smtp.security == TLS:
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        with client:
            if smtp.security == STARTTLS:
                client.starttls(context=context)
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        transient = all(400 <= code < 500 for code in codes)
        raise SendFailed(f"{smtp.where} refused the recipient: {_answers(exc.recipients)}", transient=transient) from exc
    except smtplib.SMTPAuthenticationError as exc:
        refused = f"{smtp.where} did not accept CHECKPOINT_SMTP_USERNAME/PASSWORD ({exc.smtp_code})"
        raise SendFailed(refused, transient=True, code=exc.smtp_code) from exc
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise SendFailed(f"{smtp.where} answered {exc.smtp_code} {text}"[:300], transient=True, code=exc.smtp_code) from exc
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise SendFailed(f"could not send through {smtp.where}: {type(exc).__name__}: {exc}"[:300], transient=True) from exc


def _answers(recipients: dict) -> str:
    return "; ".join(
        f"{address}: {code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
        for address, (code, text) in recipients.items()
    )[:300]
