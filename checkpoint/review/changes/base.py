"""The Change every kind derives from: its identity (JSON, dedupe key), how it names itself,
and the registry questions each kind answers; plus the registry look-ups several kinds share."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review.governance import Governance


@dataclass(frozen=True)
class Change:
    """Common behaviour; subclasses add fields and the kind-specific logic."""

    kind: ClassVar[str] = ""
    # The change in words for the request page's "Asked for" row, filled from :meth:`words`:
    # each kind's sentence is data beside its code, and the raw JSON stays one click away.
    WORDS: ClassVar[str] = ""
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

    def asked(self) -> str:
        """What is asked, in words a reviewer reads ("set @champion of fraud-detector to v3")."""
        return self.WORDS.format_map(self.words())

    def words(self) -> dict[str, str]:
        """The values :attr:`WORDS` names: the scalar fields (``version_`` as ``version``);
        kinds add the parts that depend on a field's value."""
        return {k.rstrip("_"): "" if v is None else str(v) for k, v in asdict(self).items() if not isinstance(v, dict)}

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

    def noop_answer(self, registry: Registry) -> dict | None:
        """MLflow's answer to this call when it would change nothing, judged on MLflow's state
        read now; None when it would change something (or this kind never counts as a no-op).
        The call itself is never sent: between this read and a forward, a reviewed change could
        land, and the stale call would then undo it unreviewed."""
        return None

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


def _q(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
