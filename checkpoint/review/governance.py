"""What is protected: the governance file (YAML) plus environment overrides.

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
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

STAGES = ("None", "Staging", "Production", "Archived")


class GovernanceError(ValueError):
    """The governance file or an override is invalid."""


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


_LIST_KEYS = {
    "governed_stages": "CHECKPOINT_GOVERNED_STAGES",
    "protected_aliases": "CHECKPOINT_PROTECTED_ALIASES",
    "protected_models": "CHECKPOINT_PROTECTED_MODELS",
    "protected_tags": "CHECKPOINT_PROTECTED_TAGS",
}


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Governance:
    """Read the governance section of the policy file, then apply ``CHECKPOINT_*`` overrides."""
    env = os.environ if env is None else env
    path = path or env.get("CHECKPOINT_POLICY_FILE") or None
    data: dict = {}
    if path:
        source = Path(path)
        if not source.is_file():
            raise GovernanceError(f"CHECKPOINT_POLICY_FILE={str(path)!r} does not exist or is not a file")
        try:
            loaded = yaml.safe_load(source.read_text()) or {}
        except yaml.YAMLError as exc:
            raise GovernanceError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise GovernanceError(f"{source}: the top level must be a mapping of keys such as protected_aliases")
        data = loaded.get("governance", loaded)
    values: dict[str, tuple[str, ...]] = {}
    for key, env_name in _LIST_KEYS.items():
        raw = data.get(key)
        if env.get(env_name, "").strip():
            raw = [item.strip() for item in env[env_name].split(",") if item.strip()]
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
