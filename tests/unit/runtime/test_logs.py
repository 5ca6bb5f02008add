"""The JSON log line operators filter on: its fields, the request id's rules, and the access
fields; a record with odd arguments never breaks a line."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys

import pytest

from checkpoint.runtime import logs, metrics


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc-123._X", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("has space", False),
        ('quote"', False),
        ("new\nline", False),
        ("", False),
        (None, False),
    ],
)
def test_request_id_keeps_a_sane_token_and_replaces_anything_else(incoming, kept):
    got = logs.request_id(incoming)
    if kept:
        assert got == incoming
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", got)
        assert got != logs.request_id(incoming)  # fresh every time


def record(msg: str = "hello %s", args: tuple = ("world",), **extra) -> logging.LogRecord:
    made = logging.LogRecord("checkpoint.proxy", logging.WARNING, __file__, 1, msg, args, None)
    made.created, made.msecs = 1764763200.25, 250.0  # 2025-12-03T12:00:00.250Z
    made.__dict__.update(extra)
    return made


def test_one_json_object_per_record():
    # A fresh context: a call served earlier in this thread (an integration test's test client) may
    # have left its request id set, and the formatter falls back to it.
    line = contextvars.Context().run(logs.JsonFormatter().format, record())
    assert json.loads(line) == {
        "timestamp": "2025-12-03T12:00:00.250Z",
        "level": "WARNING",
        "logger": "checkpoint.proxy",
        "message": "hello world",
        "request_id": None,
    }
    assert "\n" not in line


def test_the_request_id_comes_from_the_record_or_the_call_being_served():
    token = logs.REQUEST_ID.set("rid-1")
    try:
        assert json.loads(logs.JsonFormatter().format(record()))["request_id"] == "rid-1"
        assert json.loads(logs.JsonFormatter().format(record(request_id="own")))["request_id"] == "own"
        assert logs.current_request_id() == "rid-1"
    finally:
        logs.REQUEST_ID.reset(token)


def test_access_fields_are_carried_and_others_are_not():
    line = json.loads(
        logs.JsonFormatter().format(
            record(
                method="GET", path="/x", status=200, duration_ms=1.5, bytes=3, user="alice", remote_addr="127.0.0.1", secret="no"
            )
        )
    )
    assert {k: line[k] for k in ("method", "path", "status", "duration_ms", "bytes", "user", "remote_addr")} == {
        "method": "GET",
        "path": "/x",
        "status": 200,
        "duration_ms": 1.5,
        "bytes": 3,
        "user": "alice",
        "remote_addr": "127.0.0.1",
    }
    assert "secret" not in line


def test_odd_arguments_and_exceptions_still_make_one_line():
    line = json.loads(logs.JsonFormatter().format(record("value %s", (object.__new__(object),))))
    assert line["message"].startswith("value <object object")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("failed", (), exc_info=sys.exc_info())
    out = json.loads(logs.JsonFormatter().format(failed))
    assert out["message"] == "failed" and "ValueError: boom" in out["exception"]


def test_non_ascii_stays_readable():
    assert '"message": "zoë ✓"' in logs.JsonFormatter().format(record("zoë ✓", ()))


@pytest.mark.parametrize(("log_format", "kind"), [("json", logs.JsonFormatter), ("text", logging.Formatter)])
def test_formatter(log_format, kind):
    assert type(logs.formatter(log_format)) is kind


def test_bad_log_format_is_refused():
    from checkpoint.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=r"CHECKPOINT_LOG_FORMAT='xml' is not json or text"):
        Settings.from_env({"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001", "CHECKPOINT_LOG_FORMAT": "xml"})
    assert Settings.from_env({"CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:5001"}).log_format == "json"
    assert logs.request_id("a" * 128) == "a" * 128
    assert os.environ.get(metrics.MULTIPROC_ENV) is None  # the test process counts in-process


def test_fresh_request_ids_are_32_hex_digits_and_never_repeat_across_threads_and_refills():
    from concurrent.futures import ThreadPoolExecutor

    calls = 3 * logs._RandomIds.SIZE // 16  # three refills of the buffer
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: logs.request_id(None), range(calls)))
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == calls


def test_a_forked_child_does_not_hand_out_the_ids_its_parent_still_holds():
    import os

    logs.request_id(None)  # the buffer now holds ids the parent will hand out
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, logs.request_id(None).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    child_id = os.read(read, 64).decode()
    os.close(read)
    assert len(child_id) == 32
    assert child_id != logs.request_id(None)
