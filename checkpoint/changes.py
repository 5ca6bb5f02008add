"""Typed registry changes: what a governed call asks for, parsed the way MLflow parses it.

Each Change knows its target, what it replaces (the champion), how to describe itself,
whether Checkpoint governs it, whether it is already true, and how to apply itself
through the registry adapter. Parsing is strict where MLflow is strict and stricter
where MLflow is ambiguous (duplicate keys): a governed route never passes a body
Checkpoint could not read.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

from checkpoint.governance import STAGES, Governance
from checkpoint.registry import Registry, RegistryError, Version

DEFAULT_WORKSPACE = "default"  # MLflow's name for the workspace a call without the header acts in
# MLflow's rule for workspace names (WorkspaceNameValidator): Kubernetes-style, 2 to 63 characters.
_WORKSPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RESERVED_WORKSPACES = {"workspaces", "api", "ajax-api", "static-files"}


class ChangeError(ValueError):
    """The body is not a valid call; answered with 400 like MLflow would."""

    status = 400
    error_code = "INVALID_PARAMETER_VALUE"


PROMPT_TAG = "mlflow.prompt.is_prompt"  # MLflow marks a registered model that is a prompt with it
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+?)(?:/(?P<version>\d+)|@(?P<alias>[^/]+))/?$")


# -- parsing ---------------------------------------------------------------------------


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
        raise ChangeError(
            f"Bad Request. Content-Type must be 'application/json', got {content_type or 'none'!r}"
        )
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


# -- the changes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """Common behaviour; subclasses add fields and the kind-specific logic."""

    kind: ClassVar[str] = ""
    name: str
    # The MLflow workspace the change acts in ("" = the default workspace): every registry read
    # and write for it is made there, and it is part of the change's identity (the dedupe key).
    workspace: str = field(default="", kw_only=True)

    # identity ----------------------------------------------------------------------
    def to_json(self) -> dict:
        fields = {k.rstrip("_"): v for k, v in asdict(self).items()}
        if not fields.get("workspace"):
            # The default workspace is left out: changes (and dedupe keys) stored before
            # workspaces existed read and match exactly as they did.
            fields.pop("workspace", None)
        return {"kind": self.kind, **fields}

    def dedupe_key(self, author: str) -> str:
        blob = json.dumps({"author": author, **self.to_json()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def version(self) -> str | None:
        return None

    @property
    def model_name(self) -> str:
        return self.name

    def target(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def where(self) -> str:
        """`` in workspace 'team-b'`` for a change outside the default workspace, else ""."""
        return f" in workspace '{self.workspace}'" if self.workspace else ""

    def title(self) -> str:
        text = self.describe() + self.where()
        return text[:1].upper() + text[1:]

    # registry questions ----------------------------------------------------------------
    def governed(self, gov: Governance, registry: Registry) -> str | None:
        """Why Checkpoint governs this change, or None when it passes."""
        raise NotImplementedError

    def challenger(self, registry: Registry) -> Version | None:
        return _version_or_none(registry, self.name, self.version) if self.version else None

    def champion(self, registry: Registry) -> Version | None:
        return None

    def is_true(self, registry: Registry) -> bool:
        raise NotImplementedError

    def apply(self, registry: Registry) -> str:
        raise NotImplementedError


def _version_or_none(registry: Registry, name: str, version: str) -> Version | None:
    try:
        return registry.version(name, version)
    except RegistryError as exc:
        if exc.not_found:
            return None
        raise


def _holds_production(gov: Governance, registry: Registry, name: str, versions: list[Version]) -> str | None:
    """Why deleting/renaming these versions touches production, if it does."""
    for v in versions:
        if gov.stage_governed(v.stage):
            return f"version {v.version} is in {v.stage}"
        protected = [a for a in v.aliases if gov.alias_protected(a)]
        if protected:
            return f"version {v.version} holds alias '{protected[0]}'"
    return None


@dataclass(frozen=True)
class Transition(Change):
    kind: ClassVar[str] = "transition"
    version_: str = ""
    stage: str = ""
    archive_existing_versions: bool = False

    @property
    def version(self) -> str:
        return self.version_

    def target(self) -> str:
        return f"stage:{self.stage}"

    def describe(self) -> str:
        archive = " (archiving the versions now there)" if self.archive_existing_versions else ""
        return f"moving '{self.name}' version {self.version_} to stage {self.stage}{archive}"

    def governed(self, gov, registry):
        if gov.stage_governed(self.stage):
            return f"stage {self.stage} is governed"
        current = _version_or_none(registry, self.name, self.version_)
        if current is not None and gov.stage_governed(current.stage):
            return f"version {self.version_} is now in {current.stage}"
        return None

    def champion(self, registry):
        holders = [v for v in registry.stage_holders(self.name, self.stage) if v.version != self.version_]
        return max(holders, key=lambda v: int(v.version), default=None)

    def is_true(self, registry):
        current = _version_or_none(registry, self.name, self.version_)
        if current is None or current.stage != self.stage:
            return False
        if self.archive_existing_versions:
            return all(v.version == self.version_ for v in registry.stage_holders(self.name, self.stage))
        return True

    def apply(self, registry):
        registry.transition_stage(self.name, self.version_, self.stage, self.archive_existing_versions)
        return f"'{self.name}' version {self.version_} is now in {self.stage}"


@dataclass(frozen=True)
class SetAlias(Change):
    kind: ClassVar[str] = "set_alias"
    alias: str = ""
    version_: str = ""

    @property
    def version(self) -> str:
        return self.version_

    def target(self) -> str:
        return f"alias:{self.alias}"

    def describe(self) -> str:
        return f"moving alias '{self.alias}' of '{self.name}' to version {self.version_}"

    def governed(self, gov, registry):
        return f"alias '{self.alias}' is protected" if gov.alias_protected(self.alias) else None

    def champion(self, registry):
        holder = registry.alias_holder(self.name, self.alias)
        return holder if holder is not None and holder.version != self.version_ else None

    def is_true(self, registry):
        holder = registry.alias_holder(self.name, self.alias)
        return holder is not None and holder.version == self.version_

    def apply(self, registry):
        registry.set_alias(self.name, self.alias, self.version_)
        return f"alias '{self.alias}' of '{self.name}' now points to version {self.version_}"


@dataclass(frozen=True)
class DeleteAlias(Change):
    kind: ClassVar[str] = "delete_alias"
    alias: str = ""

    def target(self) -> str:
        return f"alias:{self.alias}"

    def describe(self) -> str:
        return f"removing alias '{self.alias}' from '{self.name}'"

    def governed(self, gov, registry):
        return f"alias '{self.alias}' is protected" if gov.alias_protected(self.alias) else None

    def champion(self, registry):
        return registry.alias_holder(self.name, self.alias)

    def is_true(self, registry):
        return registry.alias_holder(self.name, self.alias) is None

    def apply(self, registry):
        registry.delete_alias(self.name, self.alias)
        return f"alias '{self.alias}' removed from '{self.name}'"


@dataclass(frozen=True)
class CreateVersion(Change):
    """A new version in a protected model: a copy (``models:/`` source) or a registration."""

    kind: ClassVar[str] = "create_version"
    source: str = ""
    body: dict = field(default_factory=dict)

    def target(self) -> str:
        return f"model:{self.name}"

    def source_ref(self) -> tuple[str, str | None, str | None] | None:
        found = _MODELS_URI.match(self.source)
        return (found["name"], found["version"], found["alias"]) if found else None

    def describe(self) -> str:
        ref = self.source_ref()
        if ref:
            what = f"version {ref[1]}" if ref[1] else f"the version with alias '{ref[2]}'"
            return f"copying '{ref[0]}' {what} into '{self.name}'"
        return f"registering a new version of '{self.name}' from {self.source}"

    def governed(self, gov, registry):
        return f"model '{self.name}' is protected" if gov.model_protected(self.name) else None

    def challenger(self, registry):
        ref = self.source_ref()
        if not ref:
            return None
        if ref[1]:
            return _version_or_none(registry, ref[0], ref[1])
        return registry.alias_holder(ref[0], ref[2])

    def champion(self, registry):
        return registry.latest_version(self.name)

    def resolved_source(self, registry) -> str:
        """``@alias`` sources are frozen to the version they meant at apply time."""
        ref = self.source_ref()
        if ref and ref[2]:
            holder = registry.alias_holder(ref[0], ref[2])
            if holder is None:
                raise RegistryError(404, "RESOURCE_DOES_NOT_EXIST", f"alias '{ref[2]}' of '{ref[0]}' is not set")
            return f"models:/{ref[0]}/{holder.version}"
        return self.source

    def is_true(self, registry):
        try:
            source = self.resolved_source(registry)
            return any(v.source == source for v in registry.search_versions(f"name = '{_q(self.name)}'"))
        except RegistryError as exc:
            if exc.not_found:
                return False
            raise

    def apply(self, registry):
        try:
            registry.model(self.name)
        except RegistryError as exc:
            if not exc.not_found:
                raise
            registry.create_model(self.name)
        created = registry.create_version({**self.body, "name": self.name, "source": self.resolved_source(registry)})
        return f"'{self.name}' version {created.version} created from {created.source}"


def _q(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


@dataclass(frozen=True)
class SetTag(Change):
    kind: ClassVar[str] = "set_tag"
    version_: str | None = None
    key: str = ""
    value: str = ""

    @property
    def version(self) -> str | None:
        return self.version_

    def target(self) -> str:
        return f"tag:{self.key}"

    def _subject(self) -> str:
        return f"'{self.name}' version {self.version_}" if self.version_ else f"registered model '{self.name}'"

    def describe(self) -> str:
        return f"setting tag '{self.key}' of {self._subject()} to '{self.value}'"

    def governed(self, gov, registry):
        if gov.tag_protected(self.key):
            return f"tag '{self.key}' is protected"
        if self.version_ is None and self.key == PROMPT_TAG:
            # Prompts skip review (Workflow.governed): marking a model as one would let its
            # champion move unreviewed. Tag edits on a model that already is a prompt pass there.
            return f"tag '{self.key}' decides whether '{self.name}' is a prompt (prompts are not reviewed)"
        return None

    def _tags(self, registry) -> dict:
        if self.version_:
            current = _version_or_none(registry, self.name, self.version_)
            return dict(current.tags) if current else {}
        return dict(registry.model(self.name).tags)

    def is_true(self, registry):
        return self._tags(registry).get(self.key) == self.value

    def apply(self, registry):
        if self.version_:
            registry.set_version_tag(self.name, self.version_, self.key, self.value)
        else:
            registry.set_model_tag(self.name, self.key, self.value)
        return f"tag '{self.key}' of {self._subject()} set to '{self.value}'"


@dataclass(frozen=True)
class DeleteTag(SetTag):
    kind: ClassVar[str] = "delete_tag"

    def describe(self) -> str:
        return f"removing tag '{self.key}' from {self._subject()}"

    def is_true(self, registry):
        return self.key not in self._tags(registry)

    def apply(self, registry):
        if self.version_:
            registry.delete_version_tag(self.name, self.version_, self.key)
        else:
            registry.delete_model_tag(self.name, self.key)
        return f"tag '{self.key}' removed from {self._subject()}"


@dataclass(frozen=True)
class DeleteVersion(Change):
    kind: ClassVar[str] = "delete_version"
    version_: str = ""

    @property
    def version(self) -> str:
        return self.version_

    def target(self) -> str:
        return "delete"

    def describe(self) -> str:
        return f"deleting '{self.name}' version {self.version_}"

    def governed(self, gov, registry):
        if gov.model_protected(self.name):
            return f"model '{self.name}' is protected"
        current = _version_or_none(registry, self.name, self.version_)
        return _holds_production(gov, registry, self.name, [current] if current else [])

    def is_true(self, registry):
        return _version_or_none(registry, self.name, self.version_) is None

    def apply(self, registry):
        registry.delete_version(self.name, self.version_)
        return f"'{self.name}' version {self.version_} deleted"


def _model_versions(registry: Registry, name: str) -> list[Version]:
    """Every version of ``name`` with its aliases: MLflow's version search leaves them out,
    so they come from the model's alias map (or a champion held by alias alone goes unseen)."""
    try:
        versions = registry.search_versions(f"name = '{_q(name)}'")
        held = registry.model(name).aliases if versions else {}
    except RegistryError as exc:
        if exc.not_found:
            return []
        raise
    return [replace(v, aliases=tuple(a for a, ver in held.items() if ver == v.version)) for v in versions]


def _model_exists(registry: Registry, name: str) -> bool:
    try:
        registry.model(name)
        return True
    except RegistryError as exc:
        if exc.not_found:
            return False
        raise


@dataclass(frozen=True)
class DeleteModel(Change):
    kind: ClassVar[str] = "delete_model"

    def target(self) -> str:
        return "delete"

    def describe(self) -> str:
        return f"deleting registered model '{self.name}' with all its versions"

    def governed(self, gov, registry):
        if gov.model_protected(self.name):
            return f"model '{self.name}' is protected"
        return _holds_production(gov, registry, self.name, _model_versions(registry, self.name))

    def is_true(self, registry):
        return not _model_exists(registry, self.name)

    def apply(self, registry):
        registry.delete_model(self.name)
        return f"registered model '{self.name}' deleted"


@dataclass(frozen=True)
class Rename(Change):
    kind: ClassVar[str] = "rename"
    new_name: str = ""

    def target(self) -> str:
        return f"rename:{self.new_name}"

    def describe(self) -> str:
        return f"renaming registered model '{self.name}' to '{self.new_name}'"

    def governed(self, gov, registry):
        for name in (self.name, self.new_name):
            if gov.model_protected(name):
                return f"model '{name}' is protected"
        return _holds_production(gov, registry, self.name, _model_versions(registry, self.name))

    def is_true(self, registry):
        return not _model_exists(registry, self.name) and _model_exists(registry, self.new_name)

    def apply(self, registry):
        registry.rename_model(self.name, self.new_name)
        return f"registered model '{self.name}' renamed to '{self.new_name}'"


KINDS: dict[str, type[Change]] = {
    cls.kind: cls
    for cls in (Transition, SetAlias, DeleteAlias, CreateVersion, SetTag, DeleteTag, DeleteVersion, DeleteModel, Rename)
}


def from_body(kind: str, body: dict, workspace: str = "") -> Change:
    """Build the Change a governed route's body asks for (after :func:`parse_body`), acting in
    ``workspace`` (canonical, see :func:`canonical_workspace`)."""
    change = _from_body(kind, body)
    return replace(change, workspace=workspace) if workspace else change


def _from_body(kind: str, body: dict) -> Change:
    name = _field(body, "name")
    if kind == "transition":
        stage = _field(body, "stage")
        canonical = next((s for s in STAGES if s.lower() == stage.lower()), None)
        if canonical is None:
            raise ChangeError(
                f"Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived."
            )
        archive = _field(body, "archive_existing_versions", bool, required=False, default=False)
        return Transition(name, version_=_field(body, "version"), stage=canonical, archive_existing_versions=archive)
    if kind == "set_alias":
        return SetAlias(name, alias=_field(body, "alias"), version_=_field(body, "version"))
    if kind == "delete_alias":
        return DeleteAlias(name, alias=_field(body, "alias"))
    if kind == "create_version":
        source = _field(body, "source", required=False, default="")
        replay = {}
        for key in ("run_id", "run_link", "description", "model_id"):
            value = _field(body, key, required=False)
            if value is not None:
                replay[key] = value
        tags = _field(body, "tags", list, required=False)
        if tags is not None:
            replay["tags"] = tags
        return CreateVersion(name, source=source, body=replay)
    if kind in ("set_tag", "delete_tag"):
        version = _field(body, "version")
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
        return DeleteVersion(name, version_=_field(body, "version"))
    if kind == "delete_model":
        return DeleteModel(name)
    if kind == "rename":
        return Rename(name, new_name=_field(body, "new_name"))
    raise ChangeError(f"unknown change kind {kind!r}")


def from_json(data: dict) -> Change:
    """Rebuild a stored Change."""
    data = dict(data)
    cls = KINDS.get(data.pop("kind", ""))
    if cls is None:
        raise ChangeError(f"unknown change kind in {data!r}")
    if "version" in data:
        data["version_"] = data.pop("version")
    if "workspace" in data:  # absent in changes stored before workspaces: the default one
        workspace = data.pop("workspace")
        if workspace is not None and not isinstance(workspace, str):
            raise ChangeError(f"workspace must be a string, got {workspace!r}")
        data["workspace"] = canonical_workspace(workspace)
    return cls(**data)
