"""The new-request form's "Add a change" fields, read into a change: the kinds a batch may hold
that a person adds by hand (an alias moved or removed, a version moved to a stage), each built
by the one parser every channel uses (``changes.parse``), so a typed change is checked exactly
as a change the JSON API receives."""

from __future__ import annotations

from collections.abc import Mapping

from checkpoint.review.changes import Change, ChangeError, parse

# (kind, what the form's menu calls it, the fields it asks for besides the model).
KINDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("set_alias", "Point an alias at a version", ("alias", "version")),
    ("delete_alias", "Remove an alias", ("alias",)),
    ("transition", "Move a version to a stage", ("stage", "version")),
)
_WANTS = {kind: fields for kind, _, fields in KINDS}


def change_from(form: Mapping[str, str], workspace: str = "") -> Change:
    """The change the ``add_*`` fields describe (in the batch's ``workspace``): a ``ChangeError``
    naming the missing or bad field otherwise."""
    kind = form.get("add_kind", "")
    if kind not in _WANTS:
        raise ChangeError(f"choose what the change does ({', '.join(label for _, label, _ in KINDS)})")
    name = form.get("add_name", "").strip()
    if not name:
        raise ChangeError("give the model's name")
    data: dict[str, object] = {"kind": kind, "name": name}
    for field in _WANTS[kind]:
        value = form.get(f"add_{field}", "").strip()
        if not value:
            raise ChangeError(f"give the {field} for this change")
        data[field] = value
    if kind == "transition":
        data["archive_existing_versions"] = form.get("add_archive") == "on"
    if workspace:
        data["workspace"] = workspace
    return parse(data)
