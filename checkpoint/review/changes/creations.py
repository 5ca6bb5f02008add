"""Changes that create: a new version of a registered model (a registration, or a copy of the
version a ``models:`` source names, pinned when the request opens) and a new registered model."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review.changes.base import Change, _q, _version_or_none
from checkpoint.review.changes.parsing import ChangeError, ModelsRef, parse_models_uri
from checkpoint.review.governance import Governance


@dataclass(frozen=True)
class CreateVersion(Change):
    """A new version: a copy (``models:`` source naming another version) or a registration.

    ``source`` is kept as asked (shown to reviewers); ``resolved`` is the exact version a
    moving reference (``@alias``, a stage, ``latest``) named when the request opened, and
    it is what apply copies: a version registered after the review is never the one copied.
    """

    kind: ClassVar[str] = "create_version"
    WORDS: ClassVar[str] = "register a new version of {name} from {source}{extras}"
    COPY_WORDS: ClassVar[str] = "copy {copied}{pinned} into {name} as a new version{extras}"
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

    def asked(self) -> str:
        asked = self.asked_ref()
        copy = asked is not None and asked.name is not None
        return (self.COPY_WORDS if copy else self.WORDS).format_map(self.words())

    def words(self) -> dict[str, str]:
        asked, exact = self.asked_ref(), self.source_ref()
        copied = asked.words() if asked is not None else self.source
        pinned = f" (v{exact.version} when the request opened)" if asked and asked.moving and self.resolved and exact else ""
        return {**super().words(), "copied": copied, "pinned": pinned, "extras": _tagged(self.body)}

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

    def noop_answer(self, registry):
        """A copy whose target's newest version already is a copy of the same source version
        (same run, same asked tags): MLflow would add an identical version, which changes
        nothing ``latest`` loads. The answer is that newest version. A registration never is."""
        ref = self.source_ref()
        if ref is None or ref.name is None or not self.resolved:
            return None
        newest = registry.latest_version(self.name)
        if newest is None or newest.source != self.resolved:
            return None
        tags = {t["key"]: t.get("value", "") for t in self.body.get("tags") or ()}
        if self.body.get("run_id") not in (None, "", newest.run_id) or any(newest.tags.get(k) != v for k, v in tags.items()):
            return None
        try:
            return {"model_version": registry.version_json(self.name, newest.version)}
        except RegistryError as exc:
            if exc.not_found:  # deleted between the two reads: no longer true
                return None
            raise

    def apply(self, registry):
        return self.said(self.create(registry))

    def create(self, registry) -> Version:
        """Register the version (and the model, if it does not exist); MLflow's record of it,
        so that a batch's undo deletes exactly this version and no other."""
        try:
            registry.model(self.name)
        except RegistryError as exc:
            if not exc.not_found:
                raise
            registry.create_model(self.name)
        return registry.create_version({**self.body, "name": self.name, "source": self.resolved_source(registry)})

    def said(self, created: Version) -> str:
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
    WORDS: ClassVar[str] = "create registered model {name}{extras}"
    body: dict = field(default_factory=dict)

    def target(self) -> str:
        return "create"

    def words(self) -> dict[str, str]:
        return {**super().words(), "extras": _tagged(self.body)}

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


def _tagged(body: dict) -> str:
    """``, tagged stage=candidate, owner=alice`` for the tags a create carries, else ""."""
    tags = ", ".join(f"{t['key']}={t.get('value', '')}" for t in body.get("tags") or ())
    return f", tagged {tags}" if tags else ""


def _model_is_prompt(registry: Registry, name: str) -> bool:
    return registry.model(name).is_prompt
