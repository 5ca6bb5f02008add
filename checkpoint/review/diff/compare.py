"""The pure diff: ``compute_diff`` compares two already-fetched versions, with no HTTP, so
every rule (metric direction, breaking signature changes, folding of ``mlflow.*`` tags) is
tested on plain data."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from typing import Literal

from checkpoint.review.diff.types import (
    DISPLAY_LIMIT,
    ColumnSpec,
    DatasetInput,
    Entry,
    FlavorDiff,
    KeyedDiff,
    MetricChange,
    MetricsDiff,
    ModelDiff,
    Provenance,
    ProvenanceDiff,
    Signature,
    SignatureDiff,
    SpecChange,
    TagDiff,
    Text,
    Verdict,
    VersionInfo,
)

DEFAULT_LOWER_IS_BETTER: tuple[str, ...] = ("*loss*", "*error*", "*rmse*", "*mae*", "*latency*")
INTERNAL_TAG_PREFIX = "mlflow."


# -- the pure diff ---------------------------------------------------------------------


def compute_diff(
    challenger: VersionInfo,
    champion: VersionInfo | None,
    *,
    lower_is_better: Iterable[str] = DEFAULT_LOWER_IS_BETTER,
    display_limit: int = DISPLAY_LIMIT,
) -> ModelDiff:
    """Compare two versions; ``champion=None`` is a first promotion (all on the challenger side)."""
    base = champion or VersionInfo(name=challenger.name, version="")
    first = champion is None
    return ModelDiff(
        challenger=provenance_of(challenger),
        champion=provenance_of(champion) if champion else None,
        first_promotion=first,
        params=diff_keyed(base.params, challenger.params, display_limit),
        metrics=diff_metrics(base, challenger, direction_matcher(lower_is_better)),
        version_tags=diff_tags(base.version_tags, challenger.version_tags, display_limit),
        run_tags=diff_tags(base.run_tags, challenger.run_tags, display_limit),
        signature=diff_signature(champion, challenger),
        requirements=_diff_requirements(champion, challenger, display_limit),
        flavors=_diff_flavors(champion, challenger),
        provenance=diff_provenance(champion, challenger),
        challenger_problems=list(challenger.problems),
        champion_problems=list(champion.problems) if champion else [],
    )


def diff_keyed(old: Mapping[str, str], new: Mapping[str, str], limit: int = DISPLAY_LIMIT) -> KeyedDiff:
    """Key-by-key comparison of two string maps, sorted by key within each bucket."""
    out = KeyedDiff()
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before is None:
            out.added.append(Entry(key, None, Text.of(str(after), limit)))
        elif after is None:
            out.removed.append(Entry(key, Text.of(str(before), limit), None))
        elif before == after:  # one shared Text: unchanged is the bulk of a big diff
            same = Text.of(str(after), limit)
            out.unchanged.append(Entry(key, same, same))
        else:
            out.changed.append(Entry(key, Text.of(str(before), limit), Text.of(str(after), limit)))
    return out


def diff_tags(old: Mapping[str, str], new: Mapping[str, str], limit: int = DISPLAY_LIMIT) -> TagDiff:
    """Tags split so MLflow's bookkeeping (``mlflow.*``) does not drown what people wrote."""

    def split(tags: Mapping[str, str], internal: bool) -> dict[str, str]:
        return {k: v for k, v in tags.items() if k.startswith(INTERNAL_TAG_PREFIX) == internal}

    return TagDiff(
        user=diff_keyed(split(old, False), split(new, False), limit),
        internal=diff_keyed(split(old, True), split(new, True), limit),
    )


def direction_matcher(patterns: Iterable[str]) -> re.Pattern[str]:
    """One compiled, case-insensitive regex for the lower-is-better name patterns (fnmatch style)."""
    parts = [fnmatch.translate(p.lower()) for p in ((patterns,) if isinstance(patterns, str) else patterns)]
    return re.compile("|".join(parts) if parts else r"(?!)", re.IGNORECASE)


_VERDICT_ORDER = {"worse": 0, "gone": 1, "new": 2, "better": 3, "same": 4}


def diff_metrics(old: VersionInfo, new: VersionInfo, lower: re.Pattern[str]) -> MetricsDiff:
    """Latest values side by side, judged by each metric's direction; worst news first."""
    changes = [
        _metric_change(key, old.metrics.get(key), new.metrics.get(key), bool(lower.match(key)), old, new)
        for key in old.metrics.keys() | new.metrics.keys()
    ]
    changes.sort(key=lambda c: (_VERDICT_ORDER[c.verdict], c.key))
    return MetricsDiff(changes)


def _metric_change(
    key: str, before: float | None, after: float | None, lower: bool, old: VersionInfo, new: VersionInfo
) -> MetricChange:
    delta = relative = None
    if before is None:
        verdict: Verdict = "new"
    elif after is None:
        verdict = "gone"
    else:
        verdict, delta, relative = _compare(before, after, lower)
    return MetricChange(
        key=key,
        champion=before,
        challenger=after,
        delta=delta,
        relative=relative,
        verdict=verdict,
        lower_is_better=lower,
        champion_history=_chart(old.metric_histories.get(key)),
        challenger_history=_chart(new.metric_histories.get(key)),
    )


def _compare(before: float, after: float, lower: bool) -> tuple[Verdict, float | None, float | None]:
    """Verdict, absolute and relative change. A NaN is never better than a number."""
    if math.isnan(before) or math.isnan(after):
        if math.isnan(before) and math.isnan(after):
            return "same", None, None
        return ("worse" if math.isnan(after) else "better"), None, None
    if before == after or math.isclose(before, after, rel_tol=1e-12, abs_tol=0.0):
        return "same", 0.0, 0.0
    delta = after - before
    relative = delta / abs(before) if before != 0 and math.isfinite(before) and math.isfinite(delta) else None
    improved = (after < before) if lower else (after > before)
    return ("better" if improved else "worse"), (delta if math.isfinite(delta) else None), relative


def _chart(points: list[tuple[int, float]] | None) -> tuple[tuple[int, float], ...]:
    return tuple(points) if points and len(points) > 1 else ()


# -- signature -------------------------------------------------------------------------


def diff_signature(champion: VersionInfo | None, challenger: VersionInfo) -> SignatureDiff:
    """Input/output/param changes. Removed or retyped inputs, newly required inputs, and any
    output change break callers; so does losing the signature (no more input checking)."""
    new_state = _sig_state(challenger)
    if champion is None:
        out = SignatureDiff("none", new_state)
        if challenger.signature:
            out.changes = _spec_changes(Signature(), challenger.signature, first=True)
        return out
    old_state = _sig_state(champion)
    out = SignatureDiff(old_state, new_state)
    if "unknown" in (old_state, new_state):
        side = "challenger" if new_state == "unknown" else "champion"
        out.notes.append(f"the {side}'s MLmodel could not be read: signature changes are unknown")
        return out
    if old_state == "present" and new_state == "absent":
        out.notes.append("the challenger has no signature: MLflow will no longer check inputs")
        out.breaking = True
        return out
    if old_state == "absent" and new_state == "present":
        out.notes.append("the challenger adds a signature: inputs the champion accepted may now be rejected")
        out.changes = _spec_changes(Signature(), challenger.signature or Signature(), first=True)
        return out
    if old_state == "absent" and new_state == "absent":
        out.notes.append("neither version has a signature")
        return out
    out.changes = _spec_changes(champion.signature or Signature(), challenger.signature or Signature())
    total = sum(len(getattr(challenger.signature, s)) for s in ("inputs", "outputs", "params"))
    out.unchanged = total - sum(1 for c in out.changes if c.challenger is not None)
    out.breaking = any(c.breaking for c in out.changes)
    return out


def _sig_state(info: VersionInfo) -> Literal["present", "absent", "unknown"]:
    if not info.mlmodel_read:
        return "unknown"
    return "present" if info.signature and (info.signature.inputs or info.signature.outputs) else "absent"


def _spec_changes(old: Signature, new: Signature, first: bool = False) -> list[SpecChange]:
    out: list[SpecChange] = []
    for section in ("inputs", "outputs", "params"):
        before = _keyed_specs(getattr(old, section))
        after = _keyed_specs(getattr(new, section))
        for key in list(dict.fromkeys([*before, *after])):
            change = _spec_change(section, key, before.get(key), after.get(key), first)
            if change:
                out.append(change)
    return out


def _keyed_specs(specs: tuple[ColumnSpec, ...]) -> dict[str, ColumnSpec]:
    """Named columns by name; unnamed tensors by position (``#0``, ``#1``...)."""
    return {spec.name or f"#{i}": spec for i, spec in enumerate(specs)}


def _spec_change(section: str, key: str, old: ColumnSpec | None, new: ColumnSpec | None, first: bool) -> SpecChange | None:
    label = {"inputs": "input", "outputs": "output", "params": "inference parameter"}[section]
    if old is None and new is not None:
        if first:
            return SpecChange(section, key, "added", None, new, False, f"{label} {key} ({new.type})")
        breaking = section == "outputs" or (section == "inputs" and new.required)
        why = "callers must now send it" if section == "inputs" and new.required else "optional"
        if section == "outputs":
            why = "callers reading outputs see a new shape"
        return SpecChange(section, key, "added", None, new, breaking, f"new {label} {key} ({new.type}): {why}")
    if new is None and old is not None:  # callers still sending or reading it fail
        return SpecChange(section, key, "removed", old, None, True, f"{label} {key} ({old.type}) was removed")
    if old is None or new is None or old == new:
        return None
    reasons = []
    if old.type != new.type:
        reasons.append(f"type {old.type} → {new.type}")
    if old.required != new.required:
        reasons.append("now required" if new.required else "now optional")
    breaking = section == "outputs" or old.type != new.type or (new.required and not old.required)
    return SpecChange(section, key, "changed", old, new, breaking, f"{label} {key}: " + ", ".join(reasons))


# -- requirements, flavours, provenance --------------------------------------------------


def _diff_requirements(champion: VersionInfo | None, challenger: VersionInfo, limit: int) -> KeyedDiff | None:
    if challenger.requirements is None or (champion is not None and champion.requirements is None):
        return None
    return diff_keyed(champion.requirements if champion else {}, challenger.requirements, limit)


def _diff_flavors(champion: VersionInfo | None, challenger: VersionInfo) -> FlavorDiff | None:
    if not challenger.mlmodel_read or (champion is not None and not champion.mlmodel_read):
        return None
    old, new = set(champion.flavors if champion else ()), set(challenger.flavors)
    return FlavorDiff(added=sorted(new - old), removed=sorted(old - new), common=sorted(old & new))


def provenance_of(info: VersionInfo) -> Provenance:
    tags = info.run_tags
    model_id = info.source[len("models:/") :].strip("/") if info.source.startswith("models:/m-") else ""
    return Provenance(
        name=info.name,
        version=info.version,
        source=info.source,
        run_id=info.run_id,
        run_name=info.run_name or tags.get("mlflow.runName", ""),
        experiment_id=info.experiment_id,
        model_id=model_id,
        git_commit=tags.get("mlflow.source.git.commit", ""),
        entry_point=tags.get("mlflow.source.name", ""),
        source_type=tags.get("mlflow.source.type", ""),
        user=info.user_id or tags.get("mlflow.user", ""),
        creation_timestamp=info.creation_timestamp,
        datasets=info.datasets,
    )


_PROVENANCE_COMPARED = ("source", "run_id", "experiment_id", "model_id", "git_commit", "entry_point", "source_type", "user")


def diff_provenance(champion: VersionInfo | None, challenger: VersionInfo) -> ProvenanceDiff:
    """Side by side, plus which fields and datasets (by name, digest and context) differ."""
    new = provenance_of(challenger)
    if champion is None:
        return ProvenanceDiff(new, None, datasets_added=list(new.datasets))
    old = provenance_of(champion)

    def ident(d: DatasetInput) -> tuple[str, str, str]:
        return (d.name, d.digest, d.context)

    old_ids, new_ids = {ident(d) for d in old.datasets}, {ident(d) for d in new.datasets}
    return ProvenanceDiff(
        challenger=new,
        champion=old,
        changed=[f for f in _PROVENANCE_COMPARED if getattr(old, f) != getattr(new, f)],
        datasets_added=[d for d in new.datasets if ident(d) not in old_ids],
        datasets_removed=[d for d in old.datasets if ident(d) not in new_ids],
    )
