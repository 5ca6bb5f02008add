"""Daemon threads per process for the work no HTTP request should wait on: sending webhook
deliveries from the outbox, reconciling applies a crash interrupted, and (on a thread of its own)
running behavioural diffs.

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
    lane: str = ""  # tasks of one lane share a thread; "" is the main one


class Background:
    """Periodic tasks on one thread per lane; :meth:`wake` runs them now (a new delivery was
    queued). A task that may take minutes (a model run) gets a lane of its own, so that webhook
    and email deliveries, releases and the reconciler never wait behind it."""

    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self._wakes: dict[str, threading.Event] = {"": threading.Event()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None  # the main lane's
        self._threads: dict[str, threading.Thread] = {}
        self._fork_hook = False

    def every(self, seconds: float, name: str, run: Callable[[], object], lane: str = "") -> None:
        self.tasks.append(_Task(name, seconds, run, lane=lane))
        self._wakes.setdefault(lane, threading.Event())

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        for lane in self._wakes:
            suffix = f"-{lane}" if lane else ""
            thread = threading.Thread(target=self._loop, args=(lane,), name=f"checkpoint-background{suffix}", daemon=True)
            self._threads[lane] = thread
            thread.start()
        self._thread = self._threads[""]
        if not self._fork_hook:
            os.register_at_fork(after_in_child=self._after_fork)
            self._fork_hook = True

    def _after_fork(self) -> None:
        if self._stop.is_set():
            return
        self._thread = None
        self._threads = {}
        self._wakes = {lane: threading.Event() for lane in self._wakes}
        self.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for event in self._wakes.values():
            event.set()
        for thread in self._threads.values():
            if thread is not threading.current_thread():
                thread.join(timeout)
        self._thread = None
        self._threads = {}

    def wake(self) -> None:
        for event in self._wakes.values():
            event.set()

    def _run(self, task: _Task) -> None:
        try:
            task.run()
        except Exception:  # one failing round must not end the thread
            log.exception("background task %s failed", task.name)
        task.due = time.monotonic() + task.every

    def _loop(self, lane: str = "") -> None:
        wake = self._wakes[lane]
        tasks = [t for t in self.tasks if t.lane == lane]
        while not self._stop.is_set():
            woken = wake.is_set()
            wake.clear()
            now = time.monotonic()
            for task in tasks:
                if self._stop.is_set():
                    return
                if woken or now >= task.due:
                    self._run(task)
            if tasks:
                delay = max(0.0, min(t.due for t in tasks) - time.monotonic())
            else:
                delay = 60.0
            wake.wait(delay)
