"""Challenger vs champion: what a reviewer needs to see before a model goes to production.

Two halves. ``compute_diff`` is pure: plain dataclasses in, plain dataclasses out, so every
rule (metric direction, breaking signature changes, folding of ``mlflow.*`` tags) is tested
without HTTP. ``load_version_info`` / ``load_diff`` fill those dataclasses through the registry
adapter and never raise for what a version merely lacks (a run, an artifact): they record it
in ``problems`` instead, because a half-known diff is still worth reviewing.

The diff is data. It never contains HTML; values are passed through untouched (``full``) with a
shortened ``display`` copy, and escaping is the template's job.
"""

from checkpoint.review.diff.artifacts import normalize_name, parse_mlmodel, parse_requirements, parse_signature
from checkpoint.review.diff.compare import (
    DEFAULT_LOWER_IS_BETTER,
    INTERNAL_TAG_PREFIX,
    compute_diff,
    diff_keyed,
    diff_metrics,
    diff_provenance,
    diff_signature,
    diff_tags,
    direction_matcher,
    provenance_of,
)
from checkpoint.review.diff.loading import (
    HISTORY_POINTS,
    MAX_HISTORY_CALLS,
    PARALLEL_READS,
    load_diff,
    load_sides,
    load_version_info,
)
from checkpoint.review.diff.stored import decode_sides, encode_sides, readable
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

__all__ = [
    "DEFAULT_LOWER_IS_BETTER",
    "DISPLAY_LIMIT",
    "HISTORY_POINTS",
    "INTERNAL_TAG_PREFIX",
    "MAX_HISTORY_CALLS",
    "PARALLEL_READS",
    "ColumnSpec",
    "DatasetInput",
    "Entry",
    "FlavorDiff",
    "KeyedDiff",
    "MetricChange",
    "MetricsDiff",
    "ModelDiff",
    "Provenance",
    "ProvenanceDiff",
    "Signature",
    "SignatureDiff",
    "SpecChange",
    "TagDiff",
    "Text",
    "Verdict",
    "VersionInfo",
    "compute_diff",
    "diff_keyed",
    "diff_metrics",
    "diff_provenance",
    "diff_signature",
    "diff_tags",
    "direction_matcher",
    "decode_sides",
    "encode_sides",
    "load_diff",
    "load_sides",
    "load_version_info",
    "normalize_name",
    "parse_mlmodel",
    "parse_requirements",
    "parse_signature",
    "provenance_of",
    "readable",
]
