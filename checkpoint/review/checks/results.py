"""What evaluating a check produces: a status and a one-line reason."""

from __future__ import annotations

from dataclasses import dataclass

from checkpoint.registry import RegistryError, Version

PASS, FAIL, ERROR, PENDING = "pass", "fail", "error", "pending"
STATUSES = (PASS, FAIL, ERROR, PENDING)
NAME_MAX = 200  # check_results.name
REASON_MAX = 500


@dataclass(frozen=True)
class Result:
    status: str
    reason: str


def one_line(text: str, limit: int = REASON_MAX) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def brief(exc: RegistryError) -> str:
    """A registry error in one short line (MLflow may answer with a whole HTML page)."""
    message = exc.message.strip().splitlines()[0] if exc.message.strip() else ""
    if message.lstrip().startswith("<"):
        message = ""
    return f"{exc.error_code} (HTTP {exc.status})" + (f": {message[:200]}" if message else "")


class Unevaluable(Exception):
    """The check could not be evaluated (recorded as ``error``)."""


def label(version: Version) -> str:
    return f"v{version.version}"
