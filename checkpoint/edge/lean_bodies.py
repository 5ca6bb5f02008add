"""The bodies of lean answers larger than one chunk (``lean.py``), as gunicorn and ``splice.py`` take them.

:class:`LeanStream` is the WSGI body of a chunked or close-delimited answer, copied chunk by chunk;
:class:`AsResponse` gives an answer with a length the shape of the urllib3 response
``splice.Bodies.download`` takes, so such a body is spliced (or copied by its loop) exactly as
urllib3's answers are. Either way a connection is handed back to the pool only after its whole
answer went by; a break-off closes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    from checkpoint.edge.lean import Answer, LeanUpstream

log = logging.getLogger("checkpoint.proxy")  # the name operators filter the JSON logs on (the proxy's)


class LeanStream:
    """The WSGI body of a lean answer too large for one chunk (or chunked, or up to the close)."""

    def __init__(
        self, upstream: LeanUpstream, answer: Answer, keep: bool, url: str, count: Callable[[str, str, int], None] | None
    ) -> None:
        self.upstream = upstream
        self.answer = answer
        self.keep = keep
        self.url = url
        self.count = count  # told the bytes moved once the body ends, as bodies.Stream (metrics)
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        answer, size = self.answer, self.upstream.chunk_size
        moved = 0
        try:
            if answer.pieces:
                data = answer.take()
                moved += len(data)
                yield data
            while not answer.complete:
                data = answer.recv(size)
                if not data:
                    if not answer.to_eof:
                        raise ConnectionResetError("the upstream closed the connection before the end of its answer")
                    answer.complete = True
                    break
                answer.feed(data)
                if answer.pieces:
                    data = answer.take()
                    moved += len(data)
                    yield data
        except (OSError, httptools.HttpParserError) as exc:
            # Headers are already out: the only honest signal left is to abort the connection.
            log.error("upstream stream for %s broke off: %s", self.url, exc)
            raise ConnectionAbortedError(f"upstream answer for {self.url} broke off: {exc}") from exc
        finally:
            if self.count is not None:
                self.count("download", "copy", moved)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.upstream.release(self.answer, self.keep)  # a half-read connection is closed


class AsResponse:
    """A lean answer with a length over one chunk, shaped as the urllib3 response ``splice.Bodies.download``
    takes: ``stream()`` for its copy loop; ``_fp.read1``, ``_connection.sock`` for its splice (which
    moves the rest of the body straight from this socket); ``close``/``release_conn`` back to the pool."""

    def __init__(self, upstream: LeanUpstream, answer: Answer, keep: bool, length: int) -> None:
        self.upstream, self.answer, self.keep = upstream, answer, keep
        self.length = length  # as http.client's response: the body bytes not yet handed out
        self._fp = _Body(self)
        self._connection = answer.conn
        self.done = self.released = False

    def read1(self, size: int) -> bytes:
        if self.answer.pieces:
            data = self.answer.take()
            if len(data) > size:
                self.answer.pieces.append(data[size:])
                data = data[:size]
        else:
            data = self.answer.recv(min(size, self.length))
        self.length -= len(data)
        return data

    def stream(self, size: int, decode_content: bool = False) -> Iterator[bytes]:
        while self.length > 0:
            data = self.read1(size)
            if not data:
                raise ConnectionResetError("the upstream closed the connection before the end of its answer")
            yield data
        self.done = True

    def close(self) -> None:
        """A break-off (the copy loop's or the splice's): never hand a half-read connection back."""
        if not self.done:
            self.released = True
            self.answer.conn.close()

    def release_conn(self) -> None:
        if self.released:
            return
        self.released = True
        if self.done:
            self.answer.complete = True  # the body went by the parser: its length is all it needed
            self.upstream.release(self.answer, self.keep)
        else:
            self.answer.conn.close()


class _Body:
    """``AsResponse._fp``: what splice's Download reads the first piece from, and closes once complete."""

    chunked = False

    def __init__(self, response: AsResponse) -> None:
        self.response = response

    @property
    def length(self) -> int:
        return self.response.length

    def read1(self, size: int) -> bytes:
        return self.response.read1(size)

    def close(self) -> None:
        self.response.done = True  # Download closes it only once its pump moved the whole body
