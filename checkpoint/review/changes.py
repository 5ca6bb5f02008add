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
import urllib.parse
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, NamedTuple

from checkpoint.errors import CheckpointError
from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review.governance import STAGES, Governance

DEFAULT_WORKSPACE = "default"  # MLflow's name for the workspace a call without the header acts in
# MLflow's rule for workspace names (WorkspaceNameValidator): Kubernetes-style, 2 to 63 characters.
_WORKSPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RESERVED_WORKSPACES = {"workspaces", "api", "ajax-api", "static-files"}


class ChangeError(CheckpointError, ValueError):
    """The body is not a valid call; answered with 400 like MLflow would."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "INVALID_PARAMETER_VALUE", message)


PROMPT_TAG = "mlflow.prompt.is_prompt"  # MLflow marks a registered model that is a prompt with it


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

    def resolve(self, registry: Registry) -> Change:
        """The change with every moving reference pinned (done when a request opens)."""
        return self


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
    """A new version: a copy (``models:`` source naming another version) or a registration.

    ``source`` is kept as asked (shown to reviewers); ``resolved`` is the exact version a
    moving reference (``@alias``, a stage, ``latest``) named when the request opened, and
    it is what apply copies: a version registered after the review is never the one copied.
    """

    kind: ClassVar[str] = "create_version"
    source: str = ""
    body: dict = field(default_factory=dict)
    resolved: str = ""

    def target(self) -> str:
        return f"model:{self.name}"

    def source_ref(self) -> ModelsRef | None:
        return parse_models_uri(self.resolved or self.source)

    def asked_ref(self) -> ModelsRef | None:
        return parse_models_uri(self.source)

    def describe(self) -> str:
        asked = self.asked_ref()
        if asked and asked.name is not None:
            exact = self.source_ref()
            pinned = f" (version {exact.version} when the request opened)" if asked.moving and self.resolved and exact else ""
            return f"copying {asked.describe()}{pinned} into '{self.name}'"
        return f"registering a new version of '{self.name}' from {self.source}"

    def protected_tags(self, gov: Governance) -> list[str]:
        return [t["key"] for t in self.body.get("tags") or () if gov.tag_protected(t["key"])]

    def governed(self, gov, registry):
        if gov.model_protected(self.name):
            return f"model '{self.name}' is protected"
        tagged = self.protected_tags(gov)
        if tagged:
            return f"the new version would carry the protected tag '{tagged[0]}'"
        return None

    def resolve(self, registry: Registry) -> CreateVersion:
        """Pin a moving ``models:`` reference to the version it names now (a 400 if none)."""
        ref = self.asked_ref()
        if ref is None or ref.name is None:
            return replace(self, resolved="")
        try:
            if _model_is_prompt(registry, ref.name):
                raise ChangeError(
                    f"Invalid model version source: '{self.source}': '{ref.name}' is a prompt, "
                    "and prompt versions cannot be model version sources"
                )
        except RegistryError as exc:
            if exc.not_found:
                raise ChangeError(f"Invalid model version source: '{self.source}': no registered model '{ref.name}'") from exc
            raise
        if ref.version is not None:
            held = _version_or_none(registry, ref.name, ref.version)
        elif ref.alias is not None:
            held = registry.alias_holder(ref.name, ref.alias)
        elif ref.stage is not None:
            held = max(registry.stage_holders(ref.name, ref.stage), key=lambda v: int(v.version), default=None)
        else:
            held = registry.latest_version(ref.name)
        if held is None:
            raise ChangeError(f"Invalid model version source: '{self.source}': {ref.describe()} does not exist")
        return replace(self, resolved=f"models:/{ref.name}/{held.version}")

    def challenger(self, registry):
        ref = self.source_ref()
        if ref is None or ref.name is None:
            return None
        if ref.version is not None:
            return _version_or_none(registry, ref.name, ref.version)
        if ref.alias is not None:  # a request stored before sources were pinned at opening
            return registry.alias_holder(ref.name, ref.alias)
        return None

    def champion(self, registry):
        return registry.latest_version(self.name)

    def resolved_source(self, registry) -> str:
        """The exact source apply sends: the pinned version, never a reference that may move."""
        if self.resolved:
            return self.resolved
        ref = self.asked_ref()
        if ref is not None and ref.moving:
            if ref.alias is None:
                raise RegistryError(
                    409,
                    "INVALID_STATE",
                    f"'{self.source}' was not pinned to a version when the request opened; open a new request",
                )
            holder = registry.alias_holder(ref.name, ref.alias)  # legacy rows: the alias's holder at apply
            if holder is None:
                raise RegistryError(404, "RESOURCE_DOES_NOT_EXIST", f"alias '{ref.alias}' of '{ref.name}' is not set")
            return f"models:/{ref.name}/{holder.version}"
        return self.source

    def is_true(self, registry):
        """A version of the same source, run and tags exists (an earlier apply that was not recorded);
        an older version of that source without the asked tags is not this change."""
        tags = {t["key"]: t.get("value", "") for t in self.body.get("tags") or ()}
        run_id = self.body.get("run_id")
        try:
            source = self.resolved_source(registry)
            versions = registry.search_versions(f"name = '{_q(self.name)}'")
            return any(
                v.source == source and run_id in (None, v.run_id) and all(v.tags.get(k) == val for k, val in tags.items())
                for v in versions
            )
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


@dataclass(frozen=True)
class CreateModel(Change):
    """A new registered model, governed when it would be born with a protected tag.

    An empty model changes nothing that serves; a tag a check or a deployment trusts
    (``validation_status=passed``) must not arrive unreviewed just because it came with
    the create. The prompt marker on a *new* model is not governed (``mlflow.genai.register_prompt``
    does exactly that): a new name serves nothing yet, and every later change of the marker is.
    """

    kind: ClassVar[str] = "create_model"
    body: dict = field(default_factory=dict)

    def target(self) -> str:
        return "create"

    def describe(self) -> str:
        tags = ", ".join(f"{t['key']}={t.get('value', '')}" for t in self.body.get("tags") or ())
        return f"creating registered model '{self.name}'" + (f" with tags {tags}" if tags else "")

    def governed(self, gov, registry):
        tagged = [t["key"] for t in self.body.get("tags") or () if gov.tag_protected(t["key"])]
        return f"the new model would carry the protected tag '{tagged[0]}'" if tagged else None

    def is_true(self, registry):
        try:
            model = registry.model(self.name)
        except RegistryError as exc:
            if exc.not_found:
                return False
            raise
        return all(model.tags.get(t["key"]) == t.get("value", "") for t in self.body.get("tags") or ())

    def apply(self, registry):
        registry.create_model(self.name, self.body)
        return f"registered model '{self.name}' created"


def _model_is_prompt(registry: Registry, name: str) -> bool:
    return registry.model(name).is_prompt


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
        if self.key == PROMPT_TAG:
            # Prompts skip review (Workflow.governed): marking a model (or a version) as one would
            # let its aliases move unreviewed, and unmarking one turns a prompt holding an
            # unreviewed champion into a model. Governed whatever the model is now, set or delete.
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
