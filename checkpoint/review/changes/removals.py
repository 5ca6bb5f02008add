"""Changes that take a name or a version away: deleting a version or a registered model, and
renaming a model (its old name is gone). Governed when the model is protected or when what goes
away holds production (a version in a governed stage or holding a protected alias)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review.changes.base import Change, _q, _version_or_none
from checkpoint.review.governance import Governance


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
class DeleteVersion(Change):
    kind: ClassVar[str] = "delete_version"
    WORDS: ClassVar[str] = "delete {name} v{version}"
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
    WORDS: ClassVar[str] = "delete model {name} and all its versions"

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
    WORDS: ClassVar[str] = "rename model {name} to {new_name}"
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
