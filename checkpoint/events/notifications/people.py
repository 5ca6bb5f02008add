"""The policy file's ``people:`` and ``groups:``: who has which address, who is in which group.

    people:
      bob: bob@example.com
      dave: dave@example.com
    groups:                      # for modes whose sign-in carries no groups (none, mlflow)
      ml-leads: [bob, dave]

An address a person's sign-in carries (header mode's email header) wins over ``people:``.
A group's members are emailed where a rule names the group, or a text mentions it; in modes
whose identity has no groups, a person's groups are read from here (identity.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from checkpoint.errors import ConfigError

# One address, no display name: local@domain with a dot in the domain.
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
NAME_MAX, ADDRESS_MAX = 256, 320


@dataclass(frozen=True)
class People:
    addresses: dict[str, str] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def address(self, name: str) -> str | None:
        return self.addresses.get(name)

    def members(self, group: str) -> tuple[str, ...]:
        return self.groups.get(group, ())

    def groups_of(self, name: str) -> frozenset[str]:
        """The groups ``name`` is listed in (for identities that carry none)."""
        return frozenset(g for g, members in self.groups.items() if name in members)

    def expand(self, names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        """``names`` with each group replaced by its members, each person once, in order."""
        out: list[str] = []
        for name in names:
            out.extend(self.groups[name] if name in self.groups else (name,))
        return tuple(dict.fromkeys(out))


def valid_address(value: str) -> bool:
    """One bare address (no display name, no list), without control characters."""
    if len(value) > ADDRESS_MAX or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return False
    return _ADDRESS.fullmatch(value) is not None


def parse(people: object, groups: object) -> People:
    """Both keys checked; an error names the key path (``people.bob``, ``groups.ml-leads[1]``)."""
    addresses: dict[str, str] = {}
    if people is not None:
        if not isinstance(people, dict):
            raise ConfigError(f"people: expected a mapping of name: address, got {type(people).__name__}")
        for name, address in people.items():
            where = f"people.{name}"
            _name(name, where)
            if not isinstance(address, str) or not valid_address(address.strip()):
                raise ConfigError(f"{where}: expected an email address such as {name}@example.com, got {address!r}")
            addresses[name] = address.strip()
    found: dict[str, tuple[str, ...]] = {}
    if groups is not None:
        if not isinstance(groups, dict):
            raise ConfigError(f"groups: expected a mapping of group: [names], got {type(groups).__name__}")
        for group, members in groups.items():
            where = f"groups.{group}"
            _name(group, where)
            if group in addresses:
                raise ConfigError(f"{where}: {group} is also a person under people:; a name is a person or a group")
            if not isinstance(members, list) or not members:
                raise ConfigError(f"{where}: expected a list of user names, e.g. [bob, dave]")
            for i, member in enumerate(members):
                _name(member, f"{where}[{i}]")
            found[group] = tuple(dict.fromkeys(m.strip() for m in members))
    nested = sorted({f"{g} lists {m}" for g, ms in found.items() for m in ms if m in found})
    if nested:
        raise ConfigError(f"groups: a group may list people only, not groups ({'; '.join(nested)})")
    return People(addresses, found)


def _name(value: object, where: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_MAX or value != value.strip():
        raise ConfigError(f"{where}: expected a user name of 1 to {NAME_MAX} characters without surrounding spaces")
    if value.startswith("@"):
        raise ConfigError(f"{where}: write the name without the @")
