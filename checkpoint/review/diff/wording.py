"""The diff's words: what a keyed section's rows are called and the line above its table, from
one table per section, so the sentence and the rows under it never disagree.

Parameters and requirements belong to what training did, and a retrain does add, drop and
change them: "added", "removed", "changed". Tags are labels people and pipelines put on one
version (or its run): a tag the champion carries and the challenger lacks was never removed from
the challenger, it was never set on it (``validation_status`` on a validated champion, missing on
a challenger nobody validated yet). So tag rows say which side has the key, and a missing side
reads "not set".
"""

from __future__ import annotations

from dataclasses import dataclass

from checkpoint.review.diff.types import KeyedDiff, ModelDiff

KINDS = ("added", "removed", "changed")


@dataclass(frozen=True)
class Words:
    """How one keyed section speaks: its noun, its row labels, the count words, an absent value."""

    noun: str  # "version tag"
    plural: str  # "version tags"
    rows: dict[str, str]  # added / removed / changed -> the row's label
    counts: dict[str, str]  # added / removed / changed / unchanged -> the count's words
    verb: str = "changed"  # "No parameter changed", "No version tag differs"
    absent: str = ""  # what an empty side's cell says

    def label(self, kind: str, first_promotion: bool = False) -> str:
        if first_promotion and kind == "added":
            return self.rows["first"]
        return self.rows[kind]


_TRAINED_ROWS = {"added": "+ added", "removed": "− removed", "changed": "~ changed", "first": "+ added"}
_TRAINED_COUNTS = {"added": "added", "removed": "removed", "changed": "changed", "unchanged": "unchanged"}
_TAG_ROWS = {
    "added": "+ only on the challenger",
    "removed": "− only on the champion",
    "changed": "~ differs",
    "first": "+ set",
}
_TAG_COUNTS = {
    "added": "only on the challenger",
    "removed": "only on the champion",
    "changed": "differ",
    "unchanged": "the same on both",
}

SECTIONS: dict[str, Words] = {
    "params": Words("parameter", "parameters", _TRAINED_ROWS, _TRAINED_COUNTS),
    "requirements": Words("requirement", "requirements", _TRAINED_ROWS, _TRAINED_COUNTS),
    "version_tags": Words("version tag", "version tags", _TAG_ROWS, _TAG_COUNTS, "differs", "not set"),
    "run_tags": Words("run tag", "run tags", _TAG_ROWS, _TAG_COUNTS, "differs", "not set"),
    "mlflow_version_tags": Words("MLflow version tag", "MLflow version tags", _TAG_ROWS, _TAG_COUNTS, "differs", "not set"),
    "mlflow_run_tags": Words("MLflow run tag", "MLflow run tags", _TAG_ROWS, _TAG_COUNTS, "differs", "not set"),
}


def row_label(section: str, kind: str, first_promotion: bool = False) -> str:
    """ "− only on the champion" for a tag the challenger lacks; "− removed" for a parameter."""
    return SECTIONS[section].label(kind, first_promotion)


def absent(section: str) -> str:
    """What a side without the key shows in its cell ("not set" for a tag, nothing otherwise)."""
    return SECTIONS[section].absent


def section_line(section: str, kd: KeyedDiff | None, first_promotion: bool = False) -> str:
    """The sentence above a section's table, in the same words as its rows.

    "No version tag differs (2 the same on both)." · "Neither version has run tags." ·
    "1 only on the champion · 1 differs · 2 the same on both." · "Parameters: not readable for one side."
    """
    words = SECTIONS[section]
    if kd is None:
        return f"{words.plural.capitalize()}: not readable for one side."
    counts = kd.counts
    if not kd.has_changes:
        if counts["unchanged"]:
            return f"No {words.noun} {words.verb} ({counts['unchanged']} {words.counts['unchanged']})."
        if first_promotion:
            return f"The challenger has no {words.plural}."
        return f"Neither version has {words.plural}."
    if first_promotion:
        noun = words.noun if counts["added"] == 1 else words.plural
        return f"{counts['added']} {noun} on the challenger (no champion to compare)."
    parts = []
    for kind in (*KINDS, "unchanged"):
        if counts[kind]:
            said = words.verb if kind == "changed" and counts[kind] == 1 else words.counts[kind]
            parts.append(f"{counts[kind]} {said}")
    return " · ".join(parts) + "."


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def summary_line(d: ModelDiff) -> str:
    """The diff in one line, in the sections' words: "1 breaking signature change · 3 metrics worse,
    1 better · 5 parameters changed · requirements unchanged · 1 version tag only on the champion"."""
    if d.first_promotion:
        return "first promotion: no champion to compare with"
    parts = []
    sig = d.signature
    breaking = sum(1 for c in sig.changes if c.breaking)
    if breaking:
        parts.append(_count(breaking, "breaking signature change"))
    elif sig.changes:
        parts.append(f"signature compatible ({_count(len(sig.changes), 'change')})")
    elif "unknown" in (sig.champion_state, sig.challenger_state):
        parts.append("signature not readable")
    else:
        parts.append("signature unchanged")
    counts = d.metrics.counts
    verdicts = [(v, counts[v]) for v in ("worse", "better", "new", "gone") if counts[v]]
    if verdicts:
        (first, n), rest = verdicts[0], verdicts[1:]
        parts.append(", ".join([f"{_count(n, 'metric')} {first}", *(f"{m} {v}" for v, m in rest)]))
    else:
        parts.append("metrics the same" if d.metrics.changes else "no metrics")
    changed = sum(len(getattr(d.params, k)) for k in KINDS)
    parts.append(f"{_count(changed, 'parameter')} changed" if changed else "parameters unchanged")
    if d.requirements is None:
        parts.append("requirements not readable")
    else:
        changed = sum(len(getattr(d.requirements, k)) for k in KINDS)
        parts.append(f"{_count(changed, 'requirement')} changed" if changed else "requirements unchanged")
    for section, tags in (("version_tags", d.version_tags.user), ("run_tags", d.run_tags.user)):
        words = SECTIONS[section]
        for kind in ("removed", "added", "changed"):
            n = len(getattr(tags, kind))
            if n:
                said = words.verb if kind == "changed" and n == 1 else words.counts[kind]
                parts.append(f"{_count(n, words.noun)} {said}")
    return " · ".join(parts)
