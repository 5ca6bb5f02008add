"""Which upstream calls Checkpoint inspects: a table of (method, registry path) → action.

The path is matched as MLflow routes it: percent-decoded once, repeated slashes
collapsed, on every API prefix MLflow has ever served (``/api``, ``/ajax-api``, with or
without ``/preview``, any ``N.0`` version), and under any ``--static-prefix``: the
prefix is not configured but allowed to be anything, so a prefix Checkpoint was not told
about cannot open a hole.
``INSPECT`` means "parse the body into a Change and ask whether it is governed";
``PASS`` is an explicit decision that a mutating call does not decide production.

A second table, ``ARTIFACT_RULES``, names every route that writes or deletes files in
MLflow's artifact store: those are governed by *where* they write (``checkpoint.review.content``),
since a registered version loads its files from a directory any artifact write can reach.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote, urlsplit


class Action(Enum):
    PASS = "pass"
    INSPECT = "inspect"


@dataclass(frozen=True)
class Rule:
    method: str
    path: str  # after the ``.../mlflow/`` prefix
    action: Action
    kind: str | None = None  # the Change kind the body is parsed into


# Every mutating model-registry route of MLflow (../shared/MLFLOW.md §1.3), plus the
# registry-adjacent ones, each with an explicit decision. Reads need no rule.
RULES: tuple[Rule, ...] = (
    Rule("POST", "model-versions/transition-stage", Action.INSPECT, "transition"),
    Rule("POST", "registered-models/alias", Action.INSPECT, "set_alias"),
    Rule("DELETE", "registered-models/alias", Action.INSPECT, "delete_alias"),
    Rule("POST", "model-versions/create", Action.INSPECT, "create_version"),
    Rule("POST", "model-versions/set-tag", Action.INSPECT, "set_tag"),
    Rule("DELETE", "model-versions/delete-tag", Action.INSPECT, "delete_tag"),
    Rule("POST", "registered-models/set-tag", Action.INSPECT, "set_model_tag"),
    Rule("DELETE", "registered-models/delete-tag", Action.INSPECT, "delete_model_tag"),
    Rule("DELETE", "model-versions/delete", Action.INSPECT, "delete_version"),
    Rule("DELETE", "registered-models/delete", Action.INSPECT, "delete_model"),
    Rule("POST", "registered-models/rename", Action.INSPECT, "rename"),
    # A new model passes unless it is born with a protected tag (changes.CreateModel).
    Rule("POST", "registered-models/create", Action.INSPECT, "create_model"),
    # Descriptions are prose.
    Rule("PATCH", "model-versions/update", Action.PASS),
    Rule("PATCH", "registered-models/update", Action.PASS),
    # A read that happens to be a POST (resolving models:/name/Production).
    Rule("POST", "registered-models/get-latest-versions", Action.PASS),
    # Webhooks report registry events; they cannot change what is promoted.
    Rule("POST", "webhooks", Action.PASS),
    Rule("PATCH", "webhooks/<id>", Action.PASS),
    Rule("DELETE", "webhooks/<id>", Action.PASS),
    Rule("POST", "webhooks/<id>/test", Action.PASS),
)


@dataclass(frozen=True)
class ArtifactRule:
    """A route that writes, deletes or only reads artifact files, and where its file path is.

    ``where``: ``path`` (the rest of the URL, relative to the artifact root), ``query``
    (``run_uuid`` and ``path`` in the query string: MLflow's older UI upload) or ``body``
    (``run_id`` or ``model_id`` and ``path`` in a JSON body: presigned uploads to cloud storage).
    """

    method: str
    route: str  # after the ``/api/N.N/`` prefix
    where: str
    verb: str  # write / delete / read


# Every artifact route of MLflow that changes a file (../shared/MLFLOW.md §7), each with its
# decision; reads (GET) need no rule and pay no lookup.
ARTIFACT_RULES: tuple[ArtifactRule, ...] = (
    ArtifactRule("PUT", "mlflow-artifacts/artifacts", "path", "write"),
    ArtifactRule("DELETE", "mlflow-artifacts/artifacts", "path", "delete"),
    ArtifactRule("POST", "mlflow-artifacts/mpu/create", "path", "write"),
    ArtifactRule("POST", "mlflow-artifacts/mpu/complete", "path", "write"),
    # Aborting changes no stored file, but it is part of a write to that place: refused alike.
    ArtifactRule("POST", "mlflow-artifacts/mpu/abort", "path", "write"),
    ArtifactRule("POST", "mlflow/upload-artifact", "query", "write"),
    ArtifactRule("POST", "mlflow/artifacts/presigned-upload-url", "body", "write"),
    # A POST that only hands out a download link.
    ArtifactRule("POST", "mlflow/artifacts/presigned-download-url", "body", "read"),
)
_ARTIFACT_TABLE = {(r.method, r.route): r for r in ARTIFACT_RULES}
_ARTIFACT_API = re.compile(
    r"^(?P<prefix>(?:/.*?)??)/(?:api|ajax-api)/\d+\.\d+/(?:preview/)?"
    r"(?P<route>mlflow-artifacts/(?:artifacts|mpu/(?:create|complete|abort))|mlflow/upload-artifact"
    r"|mlflow/artifacts/presigned-(?:upload|download)-url)(?:/(?P<rest>.*))?$"
)

_API = re.compile(r"^(?P<prefix>/.*?)?/(?P<api>api|ajax-api)/\d+\.\d+/(?:preview/)?mlflow/(?P<rest>.+)$")
_MULTI_SLASH = re.compile(r"/{2,}")
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TABLE = {(r.method, r.path): r for r in RULES}
# The methods any rule names: a call with another method (GET, HEAD, OPTIONS: most of the
# traffic) can never be inspected, so the gateway skips the path matching for it.
RULED_METHODS = frozenset(r.method for r in RULES) | frozenset(r.method for r in ARTIFACT_RULES)


def normalise(raw_path: str) -> str:
    """The path MLflow would route: query and fragment dropped, decoded once, ``//`` collapsed.

    The proxy forwards an absolute-form target (``http://host/api/...``) or one without a
    leading ``/`` as the plain path, and urllib3 drops a ``#fragment``: each is matched as
    the path MLflow receives, or it would slip past the rules.
    """
    target = raw_path.split("#", 1)[0].split("?", 1)[0]
    if _ABSOLUTE.match(target):
        target = urlsplit(target).path
    return _MULTI_SLASH.sub("/", "/" + unquote(target))


def _api_match(raw_path: str, normalised: str | None = None) -> re.Match | None:
    found = _API.match(normalised if normalised is not None else normalise(raw_path))
    # An artifact's own path may contain anything; artifact routes are never registry calls.
    if found and "mlflow-artifacts" in (found.group("prefix") or ""):
        return None
    return found


def match(method: str, raw_path: str, normalised: str | None = None) -> Rule | None:
    """The rule for this call, or None for a call no rule covers (a read, or not the registry).

    ``normalised``: ``normalise(raw_path)`` when the caller has it already."""
    found = _api_match(raw_path, normalised)
    if not found:
        return None
    rest = found.group("rest")
    if rest.startswith("webhooks/"):
        parts = rest.split("/")
        rest = "/".join(["webhooks", "<id>", *parts[2:]])
    return _TABLE.get((method.upper(), rest))


def match_artifact(method: str, raw_path: str, normalised: str | None = None) -> tuple[ArtifactRule, str] | None:
    """The artifact rule for this call and the file path in its URL (``where == "path"``,
    still percent-encoded as MLflow will decode it), or None when it is no artifact route.
    ``normalised`` as for :func:`match`."""
    found = _ARTIFACT_API.match(normalised if normalised is not None else normalise(raw_path))
    if not found:
        return None
    rule = _ARTIFACT_TABLE.get((method.upper(), found.group("route")))
    if rule is None:
        return None
    if rule.where == "path":
        # The URL path decoded once (``normalise``); MLflow decodes the artifact path until it
        # stops changing, so the first occurrence of the route is where its path begins.
        return rule, found.group("rest") or ""
    if found.group("rest"):
        return None  # ``upload-artifact/x`` is no route of MLflow's
    return rule, ""


def is_ui_call(raw_path: str) -> bool:
    """MLflow's web UI calls ``ajax-api``; programs call ``api``."""
    found = _api_match(raw_path)
    return found is not None and found.group("api") == "ajax-api"
