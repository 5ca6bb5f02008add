"""A real SMTP server for the email tests: aiosmtpd on a loopback port, keeping every message
it accepts. ``refuse`` answers the next DATA commands with a code (451: try later) instead;
``stop()`` takes it down (connections are then refused) and ``start()`` brings it back on the
same port, so a test can make the server fail on demand."""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from checkpoint.demo.mlflow_server import free_port

__all__ = ["Received", "Sink"]


@dataclass(frozen=True)
class Received:
    to: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        """The ``text/<subtype>`` body."""
        found = self.message.get_body(preferencelist=(subtype,))
        assert found is not None, f"no text/{subtype} part in {self.subject!r}"
        return found.get_content()


@dataclass
class _Handler:
    sink: Sink

    async def handle_DATA(self, server, session, envelope) -> str:
        return self.sink._arrive(tuple(envelope.rcpt_tos), envelope.content)


@dataclass
class Sink:
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # answers for the next DATA commands, in order
    attempts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _controller: Controller | None = field(default=None, repr=False)

    def start(self) -> Sink:
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse(self, *answers: str) -> None:
        with self._lock:
            self.refusals.extend(answers)

    def _arrive(self, to: tuple[str, ...], content: bytes) -> str:
        with self._lock:
            self.attempts += 1
            if self.refusals:
                return self.refusals.pop(0)
            message = email.message_from_bytes(content.replace(b"\r\n", b"\n"), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append(Received(to, message))
            return "250 OK"

    def to(self, address: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if address in r.to]

    def config(self) -> dict:
        """The settings that send Checkpoint's email here."""
        return {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_security": "none",
            "smtp_from": "Checkpoint <checkpoint@example.com>",
        }
