"""One race: calls in threads released together by a barrier, so they really overlap."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["race", "result_or_error"]


def race(*calls: Callable[[], object], timeout: float = 120.0, capture: bool = False, daemon: bool = False) -> list:
    """Run ``calls`` at once; their results in order. An exception in a call is re-raised here (the
    first one), or with ``capture`` returned in that call's place for the test to judge. Daemon
    threads let a deadlocked race still report (the assertion below names it)."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    failed: dict[int, BaseException] = {}

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread below
            failed[index] = exc
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c), daemon=daemon) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    stuck = [i for i, t in enumerate(threads) if t.is_alive()]
    assert not stuck, f"racing calls {stuck} did not finish within {timeout} s"
    if failed and not capture:
        raise failed[min(failed)]
    return results


def result_or_error(function: Callable[..., object], *args: object) -> object:
    """``function(*args)``, or the exception it raised: for a call in a thread whose failure the
    test judges."""
    try:
        return function(*args)
    except BaseException as exc:  # noqa: BLE001 - the caller asserts on it
        return exc
