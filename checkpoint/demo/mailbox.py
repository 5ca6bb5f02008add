"""The demo's mailbox: a small SMTP server on a loopback port that keeps every email Checkpoint
sends (as ``.eml`` files) and prints one line per recipient on the demo's console, so a newcomer
sees bob's "asks for your review" and alice's "is applied" without a mail server of their own.

Standard library only (the demo needs no extra package): enough of SMTP for ``smtplib`` (EHLO,
MAIL, RCPT, DATA, RSET, NOOP, QUIT), no relaying, no authentication, loopback only.
"""

from __future__ import annotations

import email
import email.policy
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path

MAX_MESSAGE = 1024 * 1024


class _Session(socketserver.StreamRequestHandler):
    server: _Server
    timeout = 30

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        self.reply("220 checkpoint-demo mailbox")
        recipients: list[str] = []
        while True:
            raw = self.rfile.readline(4096)
            if not raw:
                return
            command, _, argument = raw.decode("utf-8", "replace").strip().partition(" ")
            verb = command.upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250-checkpoint-demo" if verb == "EHLO" else "250 checkpoint-demo")
                if verb == "EHLO":
                    self.reply("250 8BITMIME")
            elif verb == "MAIL":
                recipients = []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(argument.partition(":")[2].strip().strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                self.server.keep(recipients, self._data())
                self.reply("250 OK: kept")
            elif verb in ("RSET", "NOOP"):
                recipients = [] if verb == "RSET" else recipients
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def _data(self) -> bytes:
        lines: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(65536)
            if not line or line in (b".\r\n", b".\n"):
                return b"".join(lines)[:MAX_MESSAGE]
            line = line[1:] if line.startswith(b"..") else line  # dot-stuffing
            size += len(line)
            if size <= MAX_MESSAGE:
                lines.append(line)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], keep: Callable[[list[str], bytes], None]) -> None:
        super().__init__(address, _Session)
        self.keep = keep


class Mailbox:
    """Serve on 127.0.0.1:``port``; each message is written to ``directory`` and ``say``-ed."""

    def __init__(self, directory: Path, say: Callable[[str], None], port: int = 0) -> None:
        self.directory = directory
        self.say = say
        self.count = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), self._keep)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-mailbox", daemon=True)

    def start(self) -> Mailbox:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must be running
            self._server.shutdown()
        self._server.server_close()

    def _keep(self, recipients: list[str], content: bytes) -> None:
        with self._lock:
            self.count += 1
            path = self.directory / f"{self.count:04d}.eml"
        path.write_bytes(content)
        message = email.message_from_bytes(content.replace(b"\r\n", b"\n"), policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
        text = body.get_content() if body is not None else ""
        link = next((line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Open it: ")), "")
        for to in recipients:
            self.say(f"email to {to}: {message['Subject']}")
        self.say(f"  {link or '(no link)'}  (saved as {path})")
