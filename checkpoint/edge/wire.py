"""gunicorn's answer with its head and a small first body write in one ``send``.

gunicorn writes the status line and headers, then each body piece, each with its own
``sendall``: for the small answers most proxied calls get (a registry read is a few hundred
bytes) that is two system calls, two GIL hand-overs under the worker's threads, and two TCP
segments. :func:`one_write` makes the first write carry the head as well. The bytes on the
wire are the same, in the same order; anything unusual (chunked, a body the method or status
forbids, a declared length the piece exceeds, a large piece) goes through gunicorn's own
code unchanged.
"""

from __future__ import annotations

from gunicorn import util
from gunicorn.http.wsgi import Response

# Larger first pieces (a streamed artifact's first chunk) gain nothing from sharing a send.
SMALL = 16 * 1024


class OneWriteResponse(Response):
    """gunicorn's Response; its first small body write also carries the head."""

    headers_sent: bool

    def write(self, arg):
        if (
            self.headers_sent
            or self.chunked
            or getattr(self, "_omits_body", True)  # an older or newer gunicorn: its own code
            or not isinstance(arg, bytes)
            or not 0 < len(arg) <= SMALL
            or (self.response_length is not None and len(arg) > self.response_length)
        ):
            return super().write(arg)
        head = self.default_headers()
        head.extend([f"{k}: {v}\r\n" for k, v in self.headers])  # as gunicorn's send_headers
        self.headers_sent = True
        self.sent += len(arg)
        util.write(self.sock, util.to_bytestring("".join(head) + "\r\n", "latin-1") + arg)
        return None


def one_write(start_response) -> None:
    """Let the answer behind this WSGI ``start_response`` send its head with its first small write."""
    response = getattr(start_response, "__self__", None)
    if type(response) is Response:
        response.__class__ = OneWriteResponse
