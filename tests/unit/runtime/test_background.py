"""The background threads: a task on a lane of its own (a model run, minutes long) never holds
the main lane's tasks (deliveries, releases, the reconciler)."""

from __future__ import annotations

import threading

from checkpoint.runtime.background import Background


def test_a_task_on_its_own_lane_does_not_hold_the_main_lane():
    background = Background()
    slow_started, slow_may_end, delivered = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        slow_started.set()
        slow_may_end.wait(30)

    background.every(3600, "behaviour", slow, lane="evaluator")
    background.every(3600, "webhooks", lambda: delivered.set() if slow_started.is_set() else None)
    background.start()
    try:
        assert slow_started.wait(10), "the evaluator lane never ran its task"
        threads = list(background._threads.values())
        assert sorted(t.name for t in threads) == ["checkpoint-background", "checkpoint-background-evaluator"]
        background.wake()  # a delivery was queued while the model run is under way
        assert delivered.wait(10), "the main lane waited behind the evaluator lane"
        assert not slow_may_end.is_set()
    finally:
        slow_may_end.set()
        background.stop()
    assert background._thread is None
    assert not any(t.is_alive() for t in threads)


def test_one_lane_alone_runs_every_task_when_woken():
    background = Background()
    ran: list[str] = []
    both = threading.Event()

    def record(name: str) -> None:
        ran.append(name)
        if {"a", "b"} <= set(ran):
            both.set()

    background.every(3600, "a", lambda: record("a"))
    background.every(3600, "b", lambda: record("b"))
    background.start()
    try:
        assert both.wait(10)
        ran.clear()
        both.clear()
        background.wake()
        assert both.wait(10) and sorted(ran) == ["a", "b"]
    finally:
        background.stop()
