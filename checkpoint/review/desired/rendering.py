"""A plan's JSON as ``checkpoint plan`` prints it, and the exit code it ends with.

It renders the JSON the plan route answers (not the Python objects), so what a person reads
and what a machine reads with ``--json`` are the same data.

    ~ fraud-detector @champion: 5 → 7  (open request #12 moves it to 7)
    + fraud-detector @challenger: (none) → 9
    - fraud-detector @legacy: 3 → (none)
    ~ churn-model stage Production: 3 → 4
    + prod.fraud-detector v3 from fraud-detector/7
    ! registry.yaml:9: broken-model @champion: registered model 'broken-model' does not exist
"""

from __future__ import annotations

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "error": "!"}
# `checkpoint plan` exits like `terraform plan -detailed-exitcode`: with --exit-code, 2 means drift.
NO_DRIFT_EXIT, ERROR_EXIT, DRIFT_EXIT = 0, 1, 2


def exit_code(plan: dict, detailed: bool) -> int:
    """1 when a target could not be planned; with ``detailed``, 2 when MLflow differs; else 0."""
    if plan["counts"]["error"]:
        return ERROR_EXIT
    return DRIFT_EXIT if detailed and plan["drift"] else NO_DRIFT_EXIT


def label(entry: dict) -> str:
    """``fraud-detector @champion``, ``churn-model stage Production``, ``prod.fraud-detector``
    (with `` (workspace team-b)`` outside the default workspace)."""
    where = "" if entry["workspace"] == "default" else f" (workspace {entry['workspace']})"
    if entry["kind"] == "alias":
        return f"{entry['model']}{where} @{entry['name']}"
    if entry["kind"] == "stage":
        return f"{entry['model']}{where} stage {entry['name']}"
    return f"{entry['model']}{where}"


def _versions(versions: list[str] | str | None) -> str:
    if not versions:
        return "(none)"
    return versions if isinstance(versions, str) else ", ".join(versions)


def line_of(entry: dict, filename: str, lines: dict[tuple[str, str, str], int]) -> str:
    """``registry.yaml:4: `` for an entry the file declares on a known line, else ""."""
    found = lines.get((entry["model"], entry["kind"], entry.get("name", "")))
    return f"{filename}:{found}: " if found is not None else ""


def render_entry(entry: dict, filename: str = "", lines: dict | None = None) -> str | None:
    """One line for an entry, or None for a target that holds as declared with no request on it."""
    marks = "; ".join(f"open request #{r['id']} {r['summary']}" for r in entry["open_requests"])
    tail = f"  ({marks})" if marks else ""
    action = entry["action"]
    if action == "error":
        return f"! {line_of(entry, filename, lines or {})}{label(entry)}: {entry['message']}{tail}"
    if entry["kind"] == "copy":
        if action == "no-op":
            return f"  {label(entry)}: v{_versions(entry['current'])} as declared ({entry['message']}){tail}" if marks else None
        return f"+ {label(entry)} v{entry['next_version']} {entry['message']}{tail}"
    if action == "no-op":
        return f"  {label(entry)}: {_versions(entry['current'])} as declared{tail}" if marks else None
    return f"{SYMBOLS[action]} {label(entry)}: {_versions(entry['current'])} → {_versions(entry['desired'])}{tail}"


def render(plan: dict, filename: str = "", lines: dict | None = None) -> str:
    """The whole plan as text, ending with a summary line (``No changes.`` when none)."""
    out = [text for text in (render_entry(e, filename, lines) for e in plan["entries"]) if text is not None]
    counts = plan["counts"]
    errors = f" {counts['error']} target(s) could not be planned." if counts["error"] else ""
    if not plan["drift"]:
        held = counts["no-op"]
        summary = f"No changes. MLflow matches {filename or 'the desired state'} ({held} target(s)).{errors}"
    else:
        summary = f"Plan: {counts['create']} to add, {counts['update']} to change, {counts['delete']} to remove.{errors}"
    if out:
        out.append("")
    out.append(summary)
    return "\n".join(out)
