"""Changes that move a pointer of an existing model or version: its stage, an alias, a tag.

What the pointer named before is the champion; each kind is governed by the stage, alias or tag
it touches (and the prompt marker, which decides whether the model is reviewed at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from checkpoint.registry import RegistryError, Version
from checkpoint.review.changes.base import Change, _version_or_none

PROMPT_TAG = "mlflow.prompt.is_prompt"  # MLflow marks a registered model that is a prompt with it


@dataclass(frozen=True)
class Transition(Change):
    kind: ClassVar[str] = "transition"
    WORDS: ClassVar[str] = "move {name} v{version} to {stage}{archive}"
    version_: str = ""
    stage: str = ""
    archive_existing_versions: bool = False

    @property
    def version(self) -> str:
        return self.version_

    def target(self) -> str:
        return f"stage:{self.stage}"

    def words(self) -> dict[str, str]:
        archive = ", archiving the versions there" if self.archive_existing_versions else ""
        return {**super().words(), "archive": archive}

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

    def noop_answer(self, registry):
        try:
            raw = registry.version_json(self.name, self.version_)
        except RegistryError as exc:
            if exc.not_found:
                return None
            raise
        if Version.from_json(raw).stage != self.stage:
            return None
        if self.archive_existing_versions and any(
            v.version != self.version_ for v in registry.stage_holders(self.name, self.stage)
        ):
            return None  # the call would archive the others: a real change
        return {"model_version": raw}  # what MLflow answers a transition: the version as it now is

    def apply(self, registry):
        registry.transition_stage(self.name, self.version_, self.stage, self.archive_existing_versions)
        return f"'{self.name}' version {self.version_} is now in {self.stage}"


@dataclass(frozen=True)
class SetAlias(Change):
    kind: ClassVar[str] = "set_alias"
    WORDS: ClassVar[str] = "set @{alias} of {name} to v{version}"
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

    def noop_answer(self, registry):
        return {} if self.is_true(registry) else None  # MLflow answers a set alias with an empty object

    def apply(self, registry):
        registry.set_alias(self.name, self.alias, self.version_)
        return f"alias '{self.alias}' of '{self.name}' now points to version {self.version_}"


@dataclass(frozen=True)
class DeleteAlias(Change):
    kind: ClassVar[str] = "delete_alias"
    WORDS: ClassVar[str] = "remove @{alias} from {name}"
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
class SetTag(Change):
    kind: ClassVar[str] = "set_tag"
    WORDS: ClassVar[str] = "set tag {key} to '{value}' on {subject}"
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

    def words(self) -> dict[str, str]:
        subject = f"{self.name} v{self.version_}" if self.version_ else f"registered model {self.name}"
        return {**super().words(), "subject": subject}

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
    WORDS: ClassVar[str] = "remove tag {key} from {subject}"

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
