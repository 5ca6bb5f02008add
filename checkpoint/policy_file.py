"""The policy file (``CHECKPOINT_POLICY_FILE``), read once into its typed sections.

One YAML file holds what is protected (governance.py's lists, at the top level or under
``governance``), the review ``rules`` with their ``checks`` (policy.py, review/checks), the
``freezes`` (review/freezes.py, kept on the Policy), the ``webhooks`` (events/webhooks) and
``people``/``groups`` (events/notifications/people.py: addresses and group members).
Each section's parser lives with its domain and names the key path of a bad value; this
module only reads the file, with one rule for every section: no file configured means every
section's defaults, a configured file that is missing, not YAML or not a mapping stops
start-up (docs/deploy.md: "a missing or bad value stops start-up").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from checkpoint.errors import ConfigError
from checkpoint.events.notifications.people import People
from checkpoint.events.notifications.people import parse as parse_people
from checkpoint.events.webhooks.config import Webhooks
from checkpoint.events.webhooks.config import parse as parse_webhooks
from checkpoint.review import freezes
from checkpoint.review.governance import Governance
from checkpoint.review.governance import parse as parse_protection
from checkpoint.review.policy import Policy, Rule
from checkpoint.review.policy_parsing import parse as parse_rules
from checkpoint.settings import PROTECTION_LISTS, Settings


@dataclass(frozen=True)
class PolicyFile:
    """The file's sections, each with its defaults when the file (or the key) is absent."""

    protection: Governance = Governance()
    rules: Policy = Policy()
    webhooks: Webhooks = Webhooks()
    # ``people:`` (name: address) and ``groups:`` (name: [people]): who gets email where.
    people: People = People()


def read(path: Path | None) -> dict:
    """The file's top-level mapping; ``{}`` when no file is configured."""
    if path is None:
        return {}
    if not path.is_file():
        raise ConfigError(f"CHECKPOINT_POLICY_FILE={str(path)!r} does not exist or is not a file")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys such as protected_aliases")
    return loaded


def load(settings: Settings) -> PolicyFile:
    """Read and check every section, in the order an operator reads the file's example."""
    data = read(settings.policy_file)
    protection = parse_protection(data.get("governance", data), {k: getattr(settings, k) for k in PROTECTION_LISTS})
    default = Rule(required_approvals=settings.required_approvals, allow_self_approval=settings.allow_self_approval)
    rules = replace(parse_rules(data.get("rules"), default), freezes=freezes.parse(data.get("freezes")))
    hooks = Webhooks() if data.get("webhooks") is None else parse_webhooks(data["webhooks"], settings.environ)
    people = parse_people(data.get("people"), data.get("groups"))
    return PolicyFile(protection, rules, hooks, people)


def from_env(env: Mapping[str, str] | None = None) -> PolicyFile:
    """The sections as the variables in ``env`` configure them (the loaders' wrappers, tests)."""
    return load(Settings.sections_of(env))
