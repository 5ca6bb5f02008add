"""What is protected: the policy file's governance keys plus environment overrides.

Defaults govern what decides production: the Staging/Production stages, aliases like
``champion`` and ``prod*``, models named ``prod.*`` / ``staging.*``, and the
``validation_status`` tag. Every key is validated at start; an error names the key.

Example ``checkpoint.yaml`` (``CHECKPOINT_POLICY_FILE``)::

    governed_stages: [Staging, Production]
    protected_aliases: [champion, "prod*", "production*", "staging*"]
    protected_models: ["prod.*", "staging.*"]
    protected_tags: [validation_status]
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from checkpoint.errors import ConfigError

STAGES = ("None", "Staging", "Production", "Archived")
# The name this module's errors had before there was one ConfigError.
GovernanceError = ConfigError


@dataclass(frozen=True)
class Governance:
    governed_stages: tuple[str, ...] = ("Staging", "Production")
    protected_aliases: tuple[str, ...] = ("champion", "prod*", "production*", "staging*")
    protected_models: tuple[str, ...] = ("prod.*", "staging.*")
    protected_tags: tuple[str, ...] = ("validation_status",)

    def stage_governed(self, stage: str | None) -> bool:
        return stage is not None and stage != "" and canonical_stage(stage) in self.governed_stages

    def alias_protected(self, alias: str) -> bool:
        return _matches(alias.lower(), self.protected_aliases)

    def model_protected(self, name: str) -> bool:
        return _matches(name, self.protected_models)

    def tag_protected(self, key: str) -> bool:
        return _matches(key, self.protected_tags)


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def canonical_stage(stage: str) -> str:
    """MLflow accepts stages in any case (``staging``); compare on its canonical spelling."""
    for known in STAGES:
        if stage.strip().lower() == known.lower():
            return known
    return stage


_LIST_KEYS = ("governed_stages", "protected_aliases", "protected_models", "protected_tags")


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Governance:
    """The protection the variables in ``env`` configure (policy file and overrides): policy_file.py reads it."""
    from checkpoint.policy_file import from_env

    return from_env(env if path is None else {**(env or {}), "CHECKPOINT_POLICY_FILE": str(path)}).protection


def parse(data: object, overrides: Mapping[str, tuple[str, ...] | None]) -> Governance:
    """The policy file's protection lists (``data``: its top level or its ``governance`` key), each
    replaced by its variable's list when that is set (``overrides``, from Settings)."""
    if not isinstance(data, dict):
        raise GovernanceError(f"governance: expected a mapping of keys such as protected_aliases, got {data!r}")
    values: dict[str, tuple[str, ...]] = {}
    for key in _LIST_KEYS:
        raw = data.get(key)
        if overrides.get(key) is not None:
            raw = list(overrides[key] or ())
        if raw is None:
            continue
        if not isinstance(raw, list) or not all(isinstance(item, str) and item.strip() for item in raw):
            raise GovernanceError(f"{key}: expected a list of non-empty strings, got {raw!r}")
        values[key] = tuple(item.strip() for item in raw)
    if "governed_stages" in values:
        stages = tuple(canonical_stage(s) for s in values["governed_stages"])
        bad = [s for s in stages if s not in STAGES or s == "None"]
        if bad:
            raise GovernanceError(f"governed_stages: {bad} not among Staging, Production, Archived")
        values["governed_stages"] = stages
    if "protected_aliases" in values:
        values["protected_aliases"] = tuple(a.lower() for a in values["protected_aliases"])
    return Governance(**values)
