"""The rows of ``request_changes`` for one request: what each of its changes acts on (model,
target) and the version it promotes (its challenger). A single-change request is one row from
its own columns; a batch one row per stored change, in apply order (migration 0016). Both the
store and the migration's backfill build rows here, so they cannot disagree."""

from __future__ import annotations


def index_rows(workspace: str | None, model_name: str, target: str, challenger: dict | None, changes: list | None) -> list[dict]:
    """``[{position, workspace, model_name, target, challenger_model, challenger_version}]``."""
    if not changes:
        return [_row(0, workspace or "", model_name, target, challenger)]
    out = []
    for position, part in enumerate(changes):
        change = part.get("change") or {}
        # A stored change names its model ``name`` and its workspace (absent = the default one).
        model, target = str(change.get("name") or ""), str(part.get("target") or "")
        out.append(_row(position, change.get("workspace") or "", model, target, part.get("challenger")))
    return out


def _row(position: int, workspace: str, model_name: str, target: str, challenger: dict | None) -> dict:
    challenger = challenger or {}
    version = challenger.get("version")
    return {
        "position": position,
        "workspace": workspace,
        "model_name": model_name,
        "target": target,
        "challenger_model": challenger.get("name") or None,
        "challenger_version": None if version is None else str(version),
    }
