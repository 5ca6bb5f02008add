"""From a body or a stored row to the Change of the right kind: the table of kinds, the fields a
client may send for each, and the three entries (a proxied call's body, a client's change, a row
Checkpoint stored). The only module that knows every kind; the kinds never import it."""

from __future__ import annotations

from dataclasses import replace

from checkpoint.review.changes.base import Change
from checkpoint.review.changes.creations import CreateModel, CreateVersion
from checkpoint.review.changes.parsing import (
    ChangeError,
    _camel,
    _field,
    _tags,
    canonical_stage,
    canonical_version,
    canonical_workspace,
    parse_models_uri,
)
from checkpoint.review.changes.pointers import DeleteAlias, DeleteTag, SetAlias, SetTag, Transition
from checkpoint.review.changes.removals import DeleteModel, DeleteVersion, Rename

KINDS: dict[str, type[Change]] = {
    cls.kind: cls
    for cls in (
        Transition,
        SetAlias,
        DeleteAlias,
        CreateVersion,
        CreateModel,
        SetTag,
        DeleteTag,
        DeleteVersion,
        DeleteModel,
        Rename,
    )
}


def from_body(kind: str, body: dict, workspace: str = "") -> Change:
    """Build the Change a governed route's body asks for (after :func:`parse_body`): every field
    read and canonicalised the way MLflow reads it (stages, versions, ``models:`` sources, tags),
    acting in ``workspace`` (canonical, see :func:`canonical_workspace`)."""
    change = _from_body(kind, body)
    return replace(change, workspace=workspace) if workspace else change


def _from_body(kind: str, body: dict) -> Change:
    name = _field(body, "name")
    if kind == "transition":
        stage = canonical_stage(_field(body, "stage"))
        archive = _field(body, "archive_existing_versions", bool, required=False, default=False)
        return Transition(
            name, version_=canonical_version(_field(body, "version")), stage=stage, archive_existing_versions=archive
        )
    if kind == "set_alias":
        return SetAlias(name, alias=_field(body, "alias"), version_=canonical_version(_field(body, "version")))
    if kind == "delete_alias":
        return DeleteAlias(name, alias=_field(body, "alias"))
    if kind == "create_version":
        source = _field(body, "source", required=False, default="")
        parse_models_uri(source)  # a models: source MLflow would refuse is refused here
        replay = {}
        for key in ("run_id", "run_link", "description", "model_id"):
            value = _field(body, key, required=False)
            if value is not None:
                replay[key] = value
        tags = _tags(body)
        if tags is not None:
            replay["tags"] = tags
        return CreateVersion(name, source=source, body=replay)
    if kind == "create_model":
        replay = {}
        description = _field(body, "description", required=False)
        if description is not None:
            replay["description"] = description
        tags = _tags(body)
        if tags is not None:
            replay["tags"] = tags
        return CreateModel(name, body=replay)
    if kind in ("set_tag", "delete_tag"):
        version = canonical_version(_field(body, "version"))
        key = _field(body, "key")
        if kind == "set_tag":
            return SetTag(name, version_=version, key=key, value=_field(body, "value", required=False, default=""))
        return DeleteTag(name, version_=version, key=key)
    if kind in ("set_model_tag", "delete_model_tag"):
        key = _field(body, "key")
        if kind == "set_model_tag":
            return SetTag(name, key=key, value=_field(body, "value", required=False, default=""))
        return DeleteTag(name, key=key)
    if kind == "delete_version":
        return DeleteVersion(name, version_=canonical_version(_field(body, "version")))
    if kind == "delete_model":
        return DeleteModel(name)
    if kind == "rename":
        return Rename(name, new_name=_field(body, "new_name"))
    raise ChangeError(f"unknown change kind {kind!r}")


# The fields of each kind a client may send (snake_case or camelCase, as MLflow reads them):
# an unknown field in a change a person or program wrote by hand is a mistake, not noise.
FIELDS: dict[str, tuple[str, ...]] = {
    "transition": ("name", "version", "stage", "archive_existing_versions"),
    "set_alias": ("name", "alias", "version"),
    "delete_alias": ("name", "alias", "version"),  # MLflow's UI sends the version; MLflow ignores it
    "create_version": ("name", "source", "run_id", "run_link", "description", "model_id", "tags"),
    "create_model": ("name", "tags", "description"),
    "set_tag": ("name", "version", "key", "value"),
    "delete_tag": ("name", "version", "key", "value"),  # a stored delete carries an empty value
    "set_model_tag": ("name", "key", "value"),
    "delete_model_tag": ("name", "key", "value"),
    "delete_version": ("name", "version"),
    "delete_model": ("name",),
    "rename": ("name", "new_name"),
}
# The kinds a client may name when it opens a request: MLflow's routes plus the model-level tag variants.
PARSE_KINDS = tuple(FIELDS)


def parse(data: dict) -> Change:
    """The one entry for a change a client hands Checkpoint (the JSON API, the pipeline client,
    the new-request form's token): ``{"kind", ...}`` with the fields of the MLflow call, or the
    shape :meth:`Change.to_json` gives. Parsed by :func:`from_body` like a proxied call; what only
    Checkpoint may decide (``resolved``) is never taken from the client."""
    if not isinstance(data, dict):
        raise ChangeError("a change is an object with a 'kind'")
    fields = dict(data)
    kind = fields.pop("kind", None)
    workspace = fields.pop("workspace", None)  # the MLflow workspace, read like the header
    if workspace is not None and not isinstance(workspace, str):
        raise ChangeError("workspace must be a string")
    if kind not in PARSE_KINDS:
        raise ChangeError(f"change.kind must be one of {', '.join(PARSE_KINDS)}")
    if kind in ("set_tag", "delete_tag") and fields.get("version") is None:
        fields.pop("version", None)
        kind = "set_model_tag" if kind == "set_tag" else "delete_model_tag"
    if kind in ("create_version", "create_model"):
        nested = fields.pop("body", None)
        if nested is not None:
            if not isinstance(nested, dict):
                raise ChangeError("change.body must be an object")
            clash = set(nested) & set(fields)
            if clash:
                raise ChangeError(f"change: field(s) {sorted(clash)} given twice")
            fields.update(nested)
        fields.pop("resolved", None)
    known = {spelling for name in FIELDS[kind] for spelling in (name, _camel(name))}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ChangeError(f"unknown field(s) {', '.join(map(repr, unknown))} for a {kind} change")
    return from_body(kind, fields, canonical_workspace(workspace))


def from_json(data: dict) -> Change:
    """Rebuild a Change Checkpoint stored itself (a request's row), canonicalised again so a
    row written by an older version compares and matches rules like a new one."""
    data = dict(data)
    cls = KINDS.get(data.pop("kind", ""))
    if cls is None:
        raise ChangeError(f"unknown change kind in {data!r}")
    if "version" in data:
        data["version_"] = data.pop("version")
    if data.get("version_") is not None:
        data["version_"] = canonical_version(data["version_"])
    if "stage" in data:
        data["stage"] = canonical_stage(data["stage"])
    if "workspace" in data:  # absent in changes stored before workspaces: the default one
        workspace = data.pop("workspace")
        if workspace is not None and not isinstance(workspace, str):
            raise ChangeError(f"workspace must be a string, got {workspace!r}")
        data["workspace"] = canonical_workspace(workspace)
    return cls(**data)
