"""One poll: ask again, briefly apart, until a condition holds or a bounded time runs out. No
test sleeps a fixed time hoping something has happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["poll", "wait_until"]

T = TypeVar("T")


def poll(fetch: Callable[[], T], *, timeout: float, step: float = 0.05, until: Callable[[T], object] = bool) -> T:
    """``fetch()``'s first value that ``until`` accepts (by default: a truthy one), or its last value
    once ``timeout`` seconds are up, for tests that word the failure themselves (``assert poll(...), log``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(step)


def wait_until(condition: Callable[[], T], what: str, *, timeout: float = 30.0, step: float = 0.05) -> T:
    """``condition()``'s first truthy value; an AssertionError naming ``what`` if none comes in time."""
    value = poll(condition, timeout=timeout, step=step)
    assert value, f"not within {timeout} s: {what}"
    return value
