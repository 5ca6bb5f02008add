"""The ``http`` check: Checkpoint POSTs the request's JSON to a receiver and reads its verdict.
Evaluated by the background thread, never while a page is being served."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, ReadTimeoutError

from checkpoint.review import diff
from checkpoint.review.checks.kinds import HttpCheck
from checkpoint.review.checks.results import ERROR, FAIL, PASS, Result, Unevaluable, one_line
from checkpoint.review.checks.subject import Subject

HTTP_ANSWER_MAX = 64 * 1024
# How often the background thread looks for queued HTTP checks (queuing one also wakes it).
CHECKS_INTERVAL = 15.0
# An HTTP check's claim (see Store.claim_check) outlives its longest evaluation: 4 tries × 30 s plus pauses.
HTTP_LEASE_SECONDS = 180.0

_RETRY_PAUSE = 0.25  # seconds, doubled per try
_http = urllib3.PoolManager(num_pools=8, maxsize=4, retries=False)


def call_http(check: HttpCheck, payload: Mapping[str, Any], *, sleep: Callable[[float], None] = time.sleep) -> Result:
    """POST ``payload`` and read ``{"status": "pass"|"fail", "reason"}``; time-bounded, retried
    on connection errors and 5xx (not on a timeout: a slow receiver would only be slower again)."""
    body = json.dumps(_finite(payload), default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "checkpoint-checks", "X-Checkpoint-Check": check.name}
    tries = 1 + check.retries
    last = ""
    for attempt in range(tries):
        if attempt:
            sleep(_RETRY_PAUSE * 2 ** (attempt - 1))
        try:
            answer = _http.request(
                "POST",
                check.url,
                body=body,
                headers=headers,
                preload_content=False,
                timeout=urllib3.Timeout(connect=check.timeout, read=check.timeout),
            )
            try:
                raw = answer.read(HTTP_ANSWER_MAX + 1)
            finally:
                answer.release_conn()
        except ReadTimeoutError:
            return Result(ERROR, f"{check.url} did not answer within {check.timeout:g} s")
        except (HTTPError, OSError) as exc:
            last = f"{check.url} could not be reached: {type(exc).__name__}"
            continue
        if answer.status >= 500:
            last = f"{check.url} answered HTTP {answer.status}"
            continue
        return _read_answer(check, answer.status, raw)
    return Result(ERROR, one_line(f"{last} (tried {tries} time{'s' if tries > 1 else ''})"))


def _read_answer(check: HttpCheck, status: int, raw: bytes) -> Result:
    if not 200 <= status < 300:
        return Result(ERROR, f"{check.url} answered HTTP {status}")
    if len(raw) > HTTP_ANSWER_MAX:
        return Result(ERROR, f"{check.url} answered with more than {HTTP_ANSWER_MAX // 1024} KB")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Result(ERROR, one_line(f"{check.url} answered with something that is not JSON: {raw[:80]!r}"))
    if not isinstance(data, dict) or data.get("status") not in (PASS, FAIL):
        shown = json.dumps(data)[:120] if not isinstance(data, dict) else repr(data.get("status"))[:120]
        return Result(ERROR, one_line(f"{check.url} answered without a status of 'pass' or 'fail' (got {shown})"))
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        return Result(ERROR, f"{check.url} answered with a reason that is not a string")
    return Result(data["status"], one_line(reason) or f"the receiver says {data['status']}")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such metric values travel as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def diff_summary(subject: Subject) -> dict[str, Any]:
    """What an HTTP receiver most likely wants from the diff: metrics side by side and
    signature changes (reads the registry adapter already cached for the local checks)."""
    challenger, champion = subject.challenger, subject.champion
    if challenger is None:
        return {}
    mine = subject.metrics(challenger) or {}
    theirs = (subject.metrics(champion) or {}) if champion else {}
    out: dict[str, Any] = {
        "metrics": {k: {"challenger": mine.get(k), "champion": theirs.get(k)} for k in sorted({*mine, *theirs})},
    }
    try:
        sig = diff.diff_signature(subject.signature_info(champion) if champion else None, subject.signature_info(challenger))
        out["signature"] = {"breaking": sig.breaking, "changes": [c.reason for c in sig.changes], "notes": sig.notes}
    except Unevaluable as exc:
        out["signature"] = {"error": str(exc)}
    return out
