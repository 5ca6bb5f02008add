"""One daemon thread per process for the work no HTTP request should wait on: sending
webhook deliveries from the outbox, and reconciling applies a crash interrupted.

Every task is safe to run in every worker of every replica at once (each claims its rows
with a conditional UPDATE), so there is no leader to elect. gunicorn forks its workers
after the app may have been built, and threads do not survive ``fork``: the child starts
its own thread again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("checkpoint.background")  # the name operators filter the JSON logs on


@dataclass
class _Task:
    name: str
    every: float
    run: Callable[[], object]
    due: float = 0.0


class Background:
    """Periodic tasks on one thread; :meth:`wake` runs them now (a new delivery was queued)."""

    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fork_hook = False

    def every(self, seconds: float, name: str, run: Callable[[], object]) -> None:
        self.tasks.append(_Task(name, seconds, run))

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-background", daemon=True)
        self._thread.start()
        if not self._fork_hook:
            os.register_at_fork(after_in_child=self._after_fork)
            self._fork_hook = True

    def _after_fork(self) -> None:
        if self._stop.is_set():
            return
        self._thread = None
        self._wake = threading.Event()
        self.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _run(self, task: _Task) -> None:
        try:
            task.run()
        except Exception:  # one failing round must not end the thread
            log.exception("background task %s failed", task.name)
        task.due = time.monotonic() + task.every

    def _loop(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.is_set()
            self._wake.clear()
            now = time.monotonic()
            for task in self.tasks:
                if self._stop.is_set():
                    return
                if woken or now >= task.due:
                    self._run(task)
            if self.tasks:
                delay = max(0.0, min(t.due for t in self.tasks) - time.monotonic())
            else:
                delay = 60.0
            self._wake.wait(delay)
