"""Typed registry changes: what a governed call asks for, parsed the way MLflow parses it.

Each Change knows its target, what it replaces (the champion), how to describe itself,
whether Checkpoint governs it, whether it is already true, and how to apply itself
through the registry adapter. Parsing is strict where MLflow is strict and stricter
where MLflow is ambiguous (duplicate keys): a governed route never passes a body
Checkpoint could not read.

``parsing`` reads bodies and fields, ``base`` holds the Change every kind derives from,
``pointers``, ``creations`` and ``removals`` hold the kinds, and ``dispatch`` turns a body,
a client's change or a stored row into the right kind. Import from the package.
"""

from checkpoint.review.changes.base import Change
from checkpoint.review.changes.creations import CreateModel, CreateVersion
from checkpoint.review.changes.dispatch import FIELDS, KINDS, PARSE_KINDS, from_body, from_json, parse
from checkpoint.review.changes.parsing import (
    DEFAULT_WORKSPACE,
    ChangeError,
    ModelsRef,
    canonical_stage,
    canonical_version,
    canonical_workspace,
    lone_surrogate,
    parse_body,
    parse_models_uri,
)
from checkpoint.review.changes.pointers import PROMPT_TAG, DeleteAlias, DeleteTag, SetAlias, SetTag, Transition
from checkpoint.review.changes.removals import DeleteModel, DeleteVersion, Rename

__all__ = [
    "DEFAULT_WORKSPACE",
    "FIELDS",
    "KINDS",
    "PARSE_KINDS",
    "PROMPT_TAG",
    "Change",
    "ChangeError",
    "CreateModel",
    "CreateVersion",
    "DeleteAlias",
    "DeleteModel",
    "DeleteTag",
    "DeleteVersion",
    "ModelsRef",
    "Rename",
    "SetAlias",
    "SetTag",
    "Transition",
    "canonical_stage",
    "canonical_version",
    "canonical_workspace",
    "from_body",
    "from_json",
    "lone_surrogate",
    "parse",
    "parse_body",
    "parse_models_uri",
]
