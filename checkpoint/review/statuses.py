"""Statuses from CI, like commit statuses on a pull request: ``{context, state, target_url,
description}`` posted on a request, or on a model version (then it speaks for every request
whose challenger is that version: a promotion of it, or a copy of it into ``prod.*``).

What a status means is decided here, from data:

* A status is bound to content. One on a version records the version's content digest when it
  was posted (``content.py``); one on a request records the digest of the request's challenger.
  It counts for a request only while that digest is the request's challenger digest: files
  re-logged under the version (which dismiss approvals and refresh the request's snapshot) leave
  an old ``success`` behind, and CI must post again on what is there now.
* The latest status per context wins (across the request's own and its version's); every row is
  kept, so the history stays readable (``GET .../statuses``).
* A rule's ``required_statuses`` lists contexts that must be ``success`` before the request moves
  to approved, exactly like a required check. The plain form (``"ci/eval"``) counts a status from
  anyone who may post one, the author included (a pipeline usually opens the request and posts
  its evaluation with one identity); the mapping form ``{context: ci/eval, from: [ci-bot]}``
  counts only statuses posted by those users: the form to use when the author must not be able
  to vouch for their own change (``docs/security.md``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from checkpoint.errors import CheckpointError, ConfigError
from checkpoint.storage.entities import PostedStatus

STATES = ("pending", "success", "failure", "error")
SUCCESS = "success"
CONTEXT_MAX, URL_MAX, DESCRIPTION_MAX = 100, 2000, 1000
# Letters, digits and . _ / : @ - (GitHub's own contexts look like "ci/eval", "security/scan").
_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
_SPEC_KEYS = {"context", "from"}


@dataclass(frozen=True)
class RequiredStatus:
    """One entry of a rule's ``required_statuses``: the context, and who may vouch for it
    (``posters``; () = anyone who may post a status)."""

    context: str
    posters: tuple[str, ...] = ()

    def counts(self, status: PostedStatus) -> bool:
        return not self.posters or status.actor in self.posters

    def describe(self) -> str:
        return self.context + (f" (from {', '.join(self.posters)})" if self.posters else "")


@dataclass(frozen=True)
class Latest:
    """The status that stands for one context on one request, and whether a rule requires it."""

    status: PostedStatus
    required: bool
    # A batch's: the change (1-based) it stands for, each change's version and rule being its own.
    part: int | None = None

    @property
    def label(self) -> str:
        """The context, numbered by its change in a batch ("2. ci/eval"), as a batch's checks are."""
        return self.status.context if self.part is None else f"{self.part}. {self.status.context}"

    def to_json(self) -> dict:
        s = self.status
        return ({"change": self.part} if self.part is not None else {}) | {
            "context": s.context,
            "state": s.state,
            "target_url": s.target_url or None,
            "description": s.description,
            "updated_at": s.created_at.isoformat(),
            "posted_by": s.actor,
            "scope": s.scope,
            "required": self.required,
        }


def parse_required(raw: object, where: str) -> tuple[RequiredStatus, ...]:
    """A rule's ``required_statuses`` (None: none), each malformed entry refused naming the key."""
    key = f"{where}.required_statuses"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{key}: expected a list of contexts (ci/eval, or {{context: ci/eval, from: [ci-bot]}}), got {raw!r}")
    out: list[RequiredStatus] = []
    for i, item in enumerate(raw):
        at = f"{key}[{i}]"
        if isinstance(item, str):
            spec = RequiredStatus(_context(item, at))
        elif isinstance(item, dict):
            unknown = set(map(str, item)) - _SPEC_KEYS
            if unknown:
                raise ConfigError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}; known: context, from")
            if "context" not in item:
                raise ConfigError(f"{at}.context: required (the status context, such as ci/eval)")
            posters = item.get("from")
            if isinstance(posters, str):
                posters = [posters]
            if not isinstance(posters, list) or not posters or not all(isinstance(p, str) and p.strip() for p in posters):
                raise ConfigError(f"{at}.from: expected a non-empty list of user names, got {posters!r}")
            spec = RequiredStatus(_context(item["context"], f"{at}.context"), tuple(p.strip() for p in posters))
        else:
            raise ConfigError(f"{at}: expected a context string or {{context, from}}, got {item!r}")
        if any(s.context == spec.context for s in out):
            raise ConfigError(f"{at}: context {spec.context!r} is listed twice")
        out.append(spec)
    return tuple(out)


def _context(value: object, where: str) -> str:
    if not isinstance(value, str) or not _CONTEXT.match(value.strip()) or len(value.strip()) > CONTEXT_MAX:
        raise ConfigError(
            f"{where}: {value!r} is not a status context (1 to {CONTEXT_MAX} letters, digits and . _ / : @ -, such as ci/eval)"
        )
    return value.strip()


def check_post(context: object, state: object, target_url: object, description: object) -> tuple[str, str, str, str]:
    """A posted status's fields, checked (a 400 naming the field; nothing is stored)."""
    if not isinstance(context, str) or not context.strip():
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "context is required (a name such as ci/eval)")
    if len(context) > CONTEXT_MAX or not _CONTEXT.match(context.strip()):
        raise CheckpointError(
            400,
            "INVALID_PARAMETER_VALUE",
            f"context: 1 to {CONTEXT_MAX} letters, digits and . _ / : @ - (such as ci/eval)",
        )
    if state not in STATES:
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", f"state must be one of {', '.join(STATES)}")
    url = "" if target_url is None else target_url
    if not isinstance(url, str):
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", "target_url must be a string")
    if url and not is_web_url(url):
        why = f"target_url must be an http:// or https:// address of at most {URL_MAX} characters"
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", why)
    text = "" if description is None else description
    if not isinstance(text, str) or len(text) > DESCRIPTION_MAX or "\x00" in text:
        why = f"description must be a string of at most {DESCRIPTION_MAX} characters, no NUL"
        raise CheckpointError(400, "INVALID_PARAMETER_VALUE", why)
    return context.strip(), str(state), url, text


def is_web_url(url: str) -> bool:
    """An absolute http(s) address with a host and nothing a link could be tricked with
    (whitespace, control characters): ``javascript:`` and friends are refused."""
    if len(url) > URL_MAX or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def latest(rows: Iterable[PostedStatus], digest: str | None, required: Sequence[RequiredStatus] = ()) -> list[Latest]:
    """The status standing for each context on a request whose challenger digest is ``digest``:
    the newest row bound to that digest (for a context a rule takes ``from`` some users only,
    the newest of theirs), by context name."""
    # A row posted on other content speaks for files no longer there.
    return standing([row for row in rows if row.digest == digest], required)


def standing(rows: Iterable[PostedStatus], required: Sequence[RequiredStatus] = ()) -> list[Latest]:
    """The newest of ``rows`` per context (of those a ``from`` list lets count), by context name."""
    specs = {s.context: s for s in required}
    best: dict[str, PostedStatus] = {}
    for row in rows:
        spec = specs.get(row.context)
        if spec is not None and not spec.counts(row):
            continue
        held = best.get(row.context)
        if held is None or row.id > held.id:
            best[row.context] = row
    return [Latest(best[c], c in specs) for c in sorted(best)]


def blocking(standing: Sequence[Latest], required: Sequence[RequiredStatus]) -> tuple[str, ...]:
    """The required contexts whose standing status is not ``success`` (or that have none)."""
    found = {item.status.context: item.status.state for item in standing}
    return tuple(spec.context for spec in required if found.get(spec.context) != SUCCESS)


def refusal(required: Sequence[RequiredStatus], context: str, actor: str, rule: str) -> str | None:
    """Why ``actor`` may not post ``context`` on a request under this rule (it would never count)."""
    spec = next((s for s in required if s.context == context), None)
    if spec is None or not spec.posters or actor in spec.posters:
        return None
    return f"rule '{rule}' takes status {context} only from {', '.join(spec.posters)}"


def unmet(standing_by_part: Sequence[tuple[Sequence[Latest], Sequence[RequiredStatus], int | None]]) -> list[tuple[str, str]]:
    """Each required context not ``success``, as (label, state), over a request's parts: each
    ``(its standing statuses, its rule's required ones, its number in a batch or None)``. A
    change's requirement is met only by what stands for that change (its own version)."""
    out = []
    for items, required, part in standing_by_part:
        states = {item.status.context: item.status.state for item in items}
        for context in blocking(items, required):
            out.append((context if part is None else f"{part}. {context}", states.get(context, "missing")))
    return out


def blocked_line(blocked: Sequence[tuple[str, str]]) -> str:
    """ "required status ci/eval is failure; required status 2. security/scan is missing"."""
    return "; ".join(f"required status {label} is {state}" for label, state in blocked)
