"""Request heads of a chosen size, sent as one write on a raw socket (as MLflow's client sends its
head), and the answer read back even when the server stops reading and closes first."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["HeadAnswer", "head_with_fields", "head_with_field", "head_with_line", "send_head"]

PATH = "/health"


@dataclass(frozen=True)
class HeadAnswer:
    status: int | None  # None: the connection closed without an answer
    content_type: str
    body: bytes


def head_with_line(length: int) -> bytes:
    """A GET whose request line (without CRLF) is ``length`` bytes (fields: Host, Connection)."""
    pad = length - len(f"GET {PATH}?p= HTTP/1.1")
    return f"GET {PATH}?p={'a' * pad} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()


def head_with_fields(count: int) -> bytes:
    """A GET with ``count`` header fields, Host and Connection included."""
    fields = "".join(f"X-P{i}: v\r\n" for i in range(count - 2))
    return f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{fields}\r\n".encode()


def head_with_field(length: int) -> bytes:
    """A GET with one extra field whose line (without CRLF) is ``length`` bytes."""
    return f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: {'v' * (length - 7)}\r\n\r\n".encode()


def send_head(base_url: str, head: bytes, timeout: float = 30) -> HeadAnswer:
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole head was read: the answer may still be there
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    if not data:
        return HeadAnswer(None, "", b"")
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    content_type = next((v.strip() for k, v in fields.items() if k.lower() == "content-type"), "")
    return HeadAnswer(int(lines[0].split()[1]), content_type, body)
