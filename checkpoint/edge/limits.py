"""How large a request head the front server takes: at least as large as MLflow's own servers take.

Measured against real servers (docs/deploy.md, "Request head limits"):

- MLflow 3.x runs uvicorn with h11. h11 refuses a head only when more than 16 KiB of it is
  buffered and still incomplete, and uvicorn (asyncio) reads at most 256 KiB at a time, so a head
  of up to 16 KiB always passes and none above 16 KiB + 256 KiB = 278,528 bytes can; in between it
  depends on how the bytes arrive (one write on loopback: ~128 KB passed). h11 counts no fields.
- MLflow 2.x ran gunicorn with gunicorn's defaults: a request line of 4,094 bytes, 100 fields of
  8,190 bytes each (CRLF included), so ~820 KB of fields in all.

gunicorn's own defaults are 2.x's, and gunicorn caps its request line at 8,190 bytes: a 5 KB
``run_id IN (...)`` filter that MLflow 3 takes got gunicorn's HTML 400. :class:`ProxyWorker`
(serving.py) raises the limits to these values (the ``CHECKPOINT_LIMIT_REQUEST_*`` settings' defaults)
and parses with :class:`BoundedRequest`, which keeps a bound on the line above that cap and one
on the whole header block. A head over them gets MLflow's JSON error shape
(:meth:`HeadLimits.refusal`), not gunicorn's HTML page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser

from checkpoint.settings import Settings

# h11's 16 KiB of incomplete head plus one 256 KiB read: no head MLflow 3 takes is longer.
REQUEST_LINE = 16 * 1024 + 256 * 1024
FIELD_SIZE = REQUEST_LINE
# gunicorn's maximum (h11 counts none; MLflow 2.x took 100).
FIELDS = 32768
# All header fields together: above 2.x's 100 x 8,190 bytes and 3.x's 278,528.
HEADER_BYTES = 1024 * 1024

__all__ = ["FIELDS", "FIELD_SIZE", "HEADER_BYTES", "REQUEST_LINE", "BoundedRequest", "HeadLimits"]


class BoundedRequest(Request):
    """gunicorn's request, with the request-line bound above gunicorn's 8,190-byte cap and the
    header block bounded on its own (gunicorn's bound, fields x field size, is ~9 GB at these
    limits). :meth:`HeadLimits.install` sets the bounds on a subclass."""

    line_bound = REQUEST_LINE
    header_bound = HEADER_BYTES

    def parse(self, unreader):
        # gunicorn's __init__ set both from its config (the line clamped) just before calling this.
        self.limit_request_line = self.line_bound
        self.max_buffer_headers = self.header_bound
        return super().parse(unreader)


@dataclass(frozen=True)
class HeadLimits:
    """The limits one worker parses with (``CHECKPOINT_LIMIT_REQUEST_*``; defaults above)."""

    line: int = REQUEST_LINE
    fields: int = FIELDS
    field_size: int = FIELD_SIZE

    @classmethod
    def of(cls, settings: Settings | None) -> HeadLimits:
        if settings is None:
            return cls()
        return cls(settings.limit_request_line, settings.limit_request_fields, settings.limit_request_field_size)

    @property
    def header_bytes(self) -> int:
        return max(HEADER_BYTES, self.field_size)

    def install(self, cfg) -> None:
        """Make this worker process parse with these limits: gunicorn's Python parser (which
        :class:`BoundedRequest` bounds; the optional C parser caps the line on its own)."""
        cfg.set("limit_request_line", self.line)
        cfg.set("limit_request_fields", self.fields)
        cfg.set("limit_request_field_size", self.field_size)
        cfg.set("http_parser", "python")
        bounds = {"line_bound": self.line, "header_bound": self.header_bytes}
        RequestParser.mesg_class = type("BoundedRequest", (BoundedRequest,), bounds)

    def refusal(self, exc: Exception) -> bytes | None:
        """The whole answer to a head over the limits, in MLflow's error shape; None for any other error.

        414 for the request line and 431 for the fields (what h11 and gunicorn name them), with
        ``BAD_REQUEST``, an error code MLflow's client knows; neither status is one it retries."""
        if isinstance(exc, LimitRequestLine):
            status = "414 URI Too Long"
            message = f"The request line is longer than Checkpoint accepts ({self.line} bytes)."
        elif isinstance(exc, LimitRequestHeaders):
            status = "431 Request Header Fields Too Large"
            message = (
                f"The request's header fields are larger than Checkpoint accepts (at most {self.fields} fields, "
                f"{self.field_size} bytes each, {self.header_bytes} bytes in all): {exc}."
            )
        else:
            return None
        body = json.dumps({"error_code": "BAD_REQUEST", "message": message}).encode()
        head = f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode("latin-1") + body
