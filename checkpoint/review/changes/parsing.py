"""Reading a governed call the way MLflow reads it, shared by every kind of change.

The body (content type, duplicate keys, double encoding, lone surrogates), one field at a time
(snake or camel case, the JSON type), and the canonical spelling of workspaces, versions, stages,
tags and ``models:`` sources: rules, dedupe keys and snapshots compare these spellings only.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any, NamedTuple

from checkpoint.errors import CheckpointError
from checkpoint.review.governance import STAGES

DEFAULT_WORKSPACE = "default"  # MLflow's name for the workspace a call without the header acts in
# MLflow's rule for workspace names (WorkspaceNameValidator): Kubernetes-style, 2 to 63 characters.
_WORKSPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RESERVED_WORKSPACES = {"workspaces", "api", "ajax-api", "static-files"}


class ChangeError(CheckpointError, ValueError):
    """The body is not a valid call; answered with 400 like MLflow would."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "INVALID_PARAMETER_VALUE", message)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise ChangeError(f"duplicated field(s) {sorted(dupes)} in the request body")
    return dict(pairs)


def parse_body(method: str, content_type: str, raw: bytes) -> dict:
    """The JSON object MLflow would read from this body (../shared/MLFLOW.md §1.4)."""
    method = method.upper()
    if method in ("POST", "PUT") and content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise ChangeError(f"Bad Request. Content-Type must be 'application/json', got {content_type or 'none'!r}")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        if isinstance(data, str):  # a legacy client's double-encoded body
            data = json.loads(data, object_pairs_hook=_no_duplicates)
    except RecursionError as exc:  # not a ValueError: uncaught, it was a 500
        raise ChangeError("Malformed JSON body: nested too deeply") from exc
    except ValueError as exc:  # bad UTF-8, bad JSON, or an integer of more than 4300 digits
        raise ChangeError(f"Malformed JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise ChangeError("The request body must be a JSON object")
    bad = lone_surrogate(data)
    if bad is not None:
        raise ChangeError(f"Malformed JSON body: {bad!r} holds a lone surrogate escape (\\ud800-\\udfff), not text")
    return data


def lone_surrogate(data: object) -> str | None:
    """The first string in parsed JSON (keys too) holding a lone UTF-16 surrogate, which
    ``json`` lets through from a ``\\udXXX`` escape and no database can store; None if clean."""
    stack = [data]
    while stack:  # iterative: the JSON may be nested as deep as the parser allowed
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item[:64]
    return None


def canonical_workspace(raw: str | None) -> str:
    """The workspace MLflow acts in for this ``X-MLFLOW-WORKSPACE`` value, "" for the default one.

    MLflow strips the value (``str.strip``); empty or ``default`` is the default workspace; any
    other name must be a valid workspace name or MLflow refuses the call. Checkpoint reads the
    same value the same way, and refuses with 400 (saying why) what MLflow would refuse, so no
    spelling makes Checkpoint govern in one workspace while MLflow acts in another.
    """
    value = (raw or "").strip()
    if value in ("", DEFAULT_WORKSPACE):
        return ""
    shown = value[:80]
    if not 2 <= len(value) <= 63 or not _WORKSPACE_NAME.fullmatch(value):
        raise ChangeError(
            f"Invalid workspace {shown!r} (X-MLFLOW-WORKSPACE): a workspace name is 2 to 63 lowercase letters, "
            "digits and inner hyphens; send one workspace only"
        )
    if value in _RESERVED_WORKSPACES:
        raise ChangeError(f"Invalid workspace {shown!r} (X-MLFLOW-WORKSPACE): the name is reserved by MLflow")
    return value


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def _field(body: dict, name: str, kind: type = str, required: bool = True, default: Any = None) -> Any:
    """Read one proto field: snake_case or camelCase, never both, of the right JSON type."""
    camel = _camel(name)
    if name != camel and name in body and camel in body:
        raise ChangeError(f"Conflicting fields '{name}' and '{camel}': send only one")
    value = body.get(name, body.get(camel))
    if value is None or (kind is str and value == "" and required):
        if required:
            raise ChangeError(f"Missing value for required parameter '{name}'.")
        return default
    if kind is bool and not isinstance(value, bool):
        raise ChangeError(f"Invalid value {value!r} for parameter '{name}': expected true or false")
    if kind is str and not isinstance(value, str):
        raise ChangeError(f"Invalid value {value!r} for parameter '{name}' supplied: it must be a string")
    if kind is list and not isinstance(value, list):
        raise ChangeError(f"Invalid value for parameter '{name}': expected a list")
    return value


def canonical_version(value: str, name: str = "version") -> str:
    """A version as MLflow reads it: ``int(value)`` (so ``"03"``, ``" 3"``, ``"+3"`` and ``"٣"``
    all mean version 3), spelled canonically so rules, dedupe keys and snapshots agree."""
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:  # also an int() of more than 4300 digits
        raise ChangeError(f"Parameter '{name}' must be an integer, got {str(value)[:64]!r}.") from exc
    return str(number)


def canonical_stage(value: str) -> str:
    """A stage as MLflow reads it (``stage.lower()`` against its four names), or a 400."""
    found = next((s for s in STAGES if s.lower() == value.lower()), None)
    if found is None:
        raise ChangeError(f"Invalid Model Version stage: {value}. Value must be one of None, Staging, Production, Archived.")
    return found


def _tags(body: dict) -> list[dict] | None:
    """A create body's ``tags``: a list of ``{key, value}`` objects with string keys and values."""
    tags = _field(body, "tags", list, required=False)
    if tags is None:
        return None
    for tag in tags:
        if not isinstance(tag, dict) or not isinstance(tag.get("key"), str):
            raise ChangeError(f"Invalid value for parameter 'tags': each tag is an object with a string 'key' ({tag!r})")
        if not isinstance(tag.get("value", ""), str):
            raise ChangeError(f"Invalid value for tag '{tag['key']}': it must be a string")
    return tags


class ModelsRef(NamedTuple):
    """A ``models:`` URI as MLflow's ``_parse_model_uri`` reads it: exactly one of a logged
    model id, a version, a stage, an alias, or none of them (``latest``)."""

    model_id: str | None = None
    name: str | None = None
    version: str | None = None
    stage: str | None = None
    alias: str | None = None

    @property
    def moving(self) -> bool:
        """Whether the reference names a version only through something that can move."""
        return self.name is not None and self.version is None

    def describe(self) -> str:
        if self.model_id is not None:
            return f"logged model {self.model_id}"
        if self.version is not None:
            return f"'{self.name}' version {self.version}"
        if self.alias is not None:
            return f"the version of '{self.name}' with alias '{self.alias}'"
        if self.stage is not None:
            return f"the latest version of '{self.name}' in stage {self.stage}"
        return f"the latest version of '{self.name}'"

    def words(self) -> str:
        """The reference as a reviewer reads it: ``fraud-detector v2``, ``fraud-detector @champion``."""
        if self.model_id is not None:
            return f"logged model {self.model_id}"
        if self.version is not None:
            return f"{self.name} v{self.version}"
        if self.alias is not None:
            return f"{self.name} @{self.alias}"
        if self.stage is not None:
            return f"the latest {self.name} in {self.stage}"
        return f"the latest version of {self.name}"


def parse_models_uri(source: str) -> ModelsRef | None:
    """What a ``model-versions/create`` source refers to, parsed as MLflow 3.17's server does
    (``urlparse`` without fragments: scheme in any case, ``models:///n/3`` and query strings
    accepted, an authority refused); None when the source is not a ``models:`` URI.

    Raises ChangeError for a ``models:`` URI MLflow would refuse: a governed route must never
    pass on a reference Checkpoint could not read."""
    try:
        parsed = urllib.parse.urlparse(source, allow_fragments=False)
    except ValueError as exc:
        if source.strip().lower().startswith("models:"):
            raise ChangeError(f"Invalid model version source: '{source}': {exc}") from exc
        return None
    if parsed.scheme != "models":
        return None
    bad = ChangeError(
        f"Invalid model version source: '{source}'. Checkpoint reads models: sources as MLflow does: "
        "'models:/name/version', 'models:/name/stage', 'models:/name/latest', 'models:/name@alias' "
        "or 'models:/<logged model id>', with no host."
    )
    path = parsed.path
    if parsed.netloc or not path.startswith("/") or len(path) <= 1:
        raise bad
    parts = path.lstrip("/").split("/")
    if len(parts) > 2 or parts[0].strip() == "":
        raise bad
    if len(parts) == 2:
        name, suffix = parts
        if suffix.strip() == "":
            raise bad
        if suffix.isdigit():
            return ModelsRef(name=name, version=canonical_version(suffix))
        if suffix.lower() == "latest":
            return ModelsRef(name=name)
        try:
            return ModelsRef(name=name, stage=canonical_stage(suffix))
        except ChangeError as exc:  # MLflow refuses an unknown stage when it resolves the source
            raise bad from exc
    if "@" in path:
        name, _, alias = parts[0].rpartition("@")
        if alias.strip() == "":
            raise bad
        return ModelsRef(name=name, alias=alias)
    return ModelsRef(model_id=parts[0])
