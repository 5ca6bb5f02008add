"""The proxy's body path: the bytes of a call and of its answer, copied between the two sockets.

Every byte an artifact upload or download moves goes through two copy loops here, both in
fixed-size chunks (``CHECKPOINT_CHUNK_SIZE``, 64 KiB) so a gigabyte never sits in memory:

* **upload** (client → MLflow): :func:`read_chunks` pulls the request body from gunicorn and
  yields it chunk by chunk to urllib3, which writes each to MLflow's socket (chunked encoding
  when the client sent no length). A body no larger than one chunk is read whole
  (:func:`read_exact`) and sent with its length. ``Proxy.request_body`` picks between them.
* **download** (MLflow → client): :class:`Stream` is the WSGI body gunicorn iterates,
  reading MLflow's answer with urllib3's ``stream()`` and yielding each chunk for gunicorn to
  write to the client. ``Proxy.forward`` returns it for every answer not known to fit in one chunk.

Why they are shaped like this: gunicorn's ``Body.read`` costs three times the CPU of the reader
under it, so :func:`body_reader` goes around it when that is safe, and lifts gunicorn's 8 KiB
socket reads to the chunk size (measured: benchmarks/README.md, tuning log); ``read1`` instead
of ``stream()`` for downloads measured no better. A failure after the answer's headers went out
aborts the client connection (never a silently short body), and a half-read upstream connection
is closed, never handed back to the pool. Where the platform and the call allow it, ``splice.py``
moves these bodies between the sockets without copying them through Python (issue #18); these
loops are its fallback (chunked, TLS, non-gunicorn, ``CHECKPOINT_ZERO_COPY=off``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from urllib3.exceptions import HTTPError

log = logging.getLogger("checkpoint.proxy")  # the name operators filter the JSON logs on (the proxy's)


class Stream:
    """The WSGI body of a streamed answer: chunks out, connection back to the pool at the end."""

    def __init__(self, response, chunk_size: int, url: str, count: Callable[[str, str, int], None] | None = None) -> None:
        self.response = response
        self.chunk_size = chunk_size
        self.url = url
        self.complete = False
        self.count = count  # told the bytes moved once the body ends (metrics: splice.Bodies)

    def __iter__(self) -> Iterator[bytes]:
        moved = 0
        try:
            for chunk in self.response.stream(self.chunk_size, decode_content=False):
                if chunk:
                    moved += len(chunk)
                    yield chunk
        except (HTTPError, OSError) as exc:
            # Headers are already out: the only honest signal left is to abort the connection.
            log.error("upstream stream for %s broke off: %s", self.url, exc)
            raise ConnectionAbortedError(f"upstream answer for {self.url} broke off: {exc}") from exc
        finally:
            if self.count is not None:
                self.count("download", "copy", moved)
        self.complete = True

    def close(self) -> None:
        if not self.complete:
            self.response.close()  # never hand a half-read connection back to the pool
        self.response.release_conn()


def body_reader(stream, recv_size: int = 0) -> Callable[[int], bytes]:
    """``read(size)`` over a request body, without gunicorn's slow wrapper when that is safe.

    gunicorn's ``Body.read(size)`` builds every answer 1 KiB at a time, re-buffering the
    rest on each step: about 2.4 s of CPU per GiB, which held uploads through Checkpoint
    near 100 MiB/s. The length, chunked or EOF reader underneath it (``Body.reader``)
    returns the same bytes, with the same errors, for a third of the CPU (see
    benchmarks/README.md). It is used only while the ``Body`` holds no bytes of its own
    (nothing was read through its ``readline``); any other stream is read as WSGI says.
    ``recv_size`` (for large bodies) also lifts gunicorn's 8 KiB socket reads to that size
    for the rest of the connection: another quarter less CPU per uploaded GiB.
    """
    if type(stream).__module__ == "gunicorn.http.body":
        reader, held = getattr(stream, "reader", None), getattr(stream, "buf", None)
        if reader is not None and hasattr(reader, "read") and held is not None and held.tell() == 0:
            unreader = getattr(reader, "unreader", None)
            if unreader is not None and isinstance(getattr(unreader, "mxchunk", None), int) and unreader.mxchunk < recv_size:
                unreader.mxchunk = recv_size
            return reader.read
    return stream.read


def read_exact(stream, size: int) -> bytes:
    """A small body, whole: exactly ``size`` bytes, or the client left too early."""
    read = body_reader(stream)
    parts = []
    while size > 0:
        data = read(size)
        if not data:
            raise ConnectionAbortedError("client closed the connection before sending its whole body")
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def read_chunks(stream, chunk_size: int, size: int | None) -> Iterator[bytes]:
    """A large body (``size`` bytes) or one of unknown length (``None``: to the end), in chunks."""
    read = body_reader(stream, chunk_size)
    remaining = size
    while remaining is None or remaining > 0:
        data = read(chunk_size if remaining is None else min(chunk_size, remaining))
        if not data:
            if remaining:
                raise ConnectionAbortedError("client closed the connection before sending its whole body")
            return
        if remaining is not None:
            remaining -= len(data)
        yield data


def discard_input(environ: dict) -> None:
    """Drain a small unread request body so the client connection stays usable."""
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH", "")
    if stream is not None and length.isdigit() and 0 < int(length) <= 1024 * 1024:
        try:
            stream.read(int(length))
        except OSError:  # pragma: no cover
            pass
