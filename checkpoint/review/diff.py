"""Challenger vs champion: what a reviewer needs to see before a model goes to production.

Two halves. ``compute_diff`` is pure: plain dataclasses in, plain dataclasses out, so every
rule (metric direction, breaking signature changes, folding of ``mlflow.*`` tags) is tested
without HTTP. ``load_version_info`` / ``load_diff`` fill those dataclasses through the registry
adapter and never raise for what a version merely lacks (a run, an artifact): they record it
in ``problems`` instead, because a half-known diff is still worth reviewing.

The diff is data. It never contains HTML; values are passed through untouched (``full``) with a
shortened ``display`` copy, and escaping is the template's job.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import yaml

from checkpoint.registry import Registry, RegistryError, Version

DEFAULT_LOWER_IS_BETTER: tuple[str, ...] = ("*loss*", "*error*", "*rmse*", "*mae*", "*latency*")
DISPLAY_LIMIT = 200
MAX_HISTORY_CALLS = 24
# Upstream reads of one diff run side by side: the page costs the slowest call, not the sum.
PARALLEL_READS = 8
HISTORY_POINTS = 200
INTERNAL_TAG_PREFIX = "mlflow."

Verdict = Literal["better", "worse", "same", "new", "gone"]


# -- inputs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One input, output or inference parameter of a signature; ``type`` is a comparable string."""

    name: str
    type: str
    required: bool = True


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[ColumnSpec, ...] = ()
    outputs: tuple[ColumnSpec, ...] = ()
    params: tuple[ColumnSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class DatasetInput:
    """A dataset the run logged as an input (``runs/get`` → ``run.inputs.dataset_inputs``)."""

    name: str
    digest: str = ""
    source_type: str = ""
    source: str = ""
    context: str = ""
    profile: str = ""


@dataclass
class VersionInfo:
    """Everything the diff compares about one model version, already fetched."""

    name: str
    version: str
    run_id: str = ""
    source: str = ""
    creation_timestamp: int = 0
    user_id: str = ""
    version_tags: dict[str, str] = field(default_factory=dict)
    run_name: str = ""
    experiment_id: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # latest value per key
    metric_steps: dict[str, int] = field(default_factory=dict)  # step of that latest value
    metric_histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)
    datasets: tuple[DatasetInput, ...] = ()
    mlmodel_read: bool = False  # False: signature / flavors are unknown, not absent
    signature: Signature | None = None
    flavors: tuple[str, ...] = ()
    requirements: dict[str, str] | None = None  # None: requirements.txt could not be read
    problems: list[str] = field(default_factory=list)


# -- outputs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    """A value as logged (``full``) and shortened for a table cell (``display``)."""

    full: str
    display: str
    truncated: bool

    @classmethod
    def of(cls, value: str, limit: int = DISPLAY_LIMIT) -> Text:
        if len(value) <= limit:
            return cls(value, value, False)
        return cls(value, value[: limit - 1] + "…", True)


@dataclass(frozen=True, slots=True)
class Entry:
    """One key of a keyed section; ``champion`` is None when added, ``challenger`` when removed."""

    key: str
    champion: Text | None
    challenger: Text | None


@dataclass
class KeyedDiff:
    """Params, tags or requirements: what was added, removed, changed; unchanged kept but folded."""

    added: list[Entry] = field(default_factory=list)
    removed: list[Entry] = field(default_factory=list)
    changed: list[Entry] = field(default_factory=list)
    unchanged: list[Entry] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    @property
    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("added", "removed", "changed", "unchanged")}


@dataclass
class TagDiff:
    """User tags in ``user``; MLflow's own ``mlflow.*`` tags folded into ``internal``."""

    user: KeyedDiff
    internal: KeyedDiff


@dataclass(frozen=True, slots=True)
class MetricChange:
    key: str
    champion: float | None
    challenger: float | None
    delta: float | None  # challenger - champion
    relative: float | None  # delta / |champion|; None when undefined (champion 0, a side missing)
    verdict: Verdict
    lower_is_better: bool
    champion_history: tuple[tuple[int, float], ...] = ()  # only when more than one step
    challenger_history: tuple[tuple[int, float], ...] = ()


@dataclass
class MetricsDiff:
    changes: list[MetricChange] = field(default_factory=list)  # sorted: new/gone/worse/better first

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("better", "worse", "same", "new", "gone"), 0)
        for change in self.changes:
            out[change.verdict] += 1
        return out


@dataclass(frozen=True, slots=True)
class SpecChange:
    """One signature difference; ``reason`` says in words what changed and why it may break callers."""

    section: Literal["inputs", "outputs", "params"]
    key: str
    change: Literal["added", "removed", "changed"]
    champion: ColumnSpec | None
    challenger: ColumnSpec | None
    breaking: bool
    reason: str


@dataclass
class SignatureDiff:
    champion_state: Literal["present", "absent", "unknown", "none"]  # "none": no champion
    challenger_state: Literal["present", "absent", "unknown"]
    changes: list[SpecChange] = field(default_factory=list)
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)
    breaking: bool = False


@dataclass
class FlavorDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    common: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a version came from: its run, code and data."""

    name: str
    version: str
    source: str
    run_id: str
    run_name: str
    experiment_id: str
    model_id: str  # the MLflow 3 logged model behind a ``models:/m-...`` source
    git_commit: str
    entry_point: str
    source_type: str
    user: str
    creation_timestamp: int
    datasets: tuple[DatasetInput, ...]


@dataclass
class ProvenanceDiff:
    challenger: Provenance
    champion: Provenance | None
    changed: list[str] = field(default_factory=list)  # Provenance fields that differ
    datasets_added: list[DatasetInput] = field(default_factory=list)
    datasets_removed: list[DatasetInput] = field(default_factory=list)


@dataclass
class ModelDiff:
    challenger: Provenance
    champion: Provenance | None
    first_promotion: bool
    params: KeyedDiff
    metrics: MetricsDiff
    version_tags: TagDiff
    run_tags: TagDiff
    signature: SignatureDiff
    requirements: KeyedDiff | None  # None when either side's requirements.txt is unknown
    flavors: FlavorDiff | None  # None when either side's MLmodel is unknown
    provenance: ProvenanceDiff
    challenger_problems: list[str] = field(default_factory=list)
    champion_problems: list[str] = field(default_factory=list)

    @property
    def breaking(self) -> bool:
        return self.signature.breaking

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data for the API (NaN/inf metric values stay floats: use allow_nan)."""
        return {**asdict(self), "breaking": self.breaking}


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


# -- parsing artifacts -----------------------------------------------------------------

_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", re.DOTALL)
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
_USERINFO = re.compile(r"(//)[^/@\s]+@")


def normalize_name(name: str) -> str:
    """PEP 503 normalisation, so ``Scikit_Learn`` and ``scikit-learn`` are one requirement."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(text: str) -> dict[str, str]:
    """``requirements.txt`` → {normalised name: the rest of the line (extras, specifier, marker, URL)}.

    Comments and blank lines are skipped; option lines (``-r``, ``--extra-index-url``) and bare
    URLs without ``#egg=`` are kept whole as their own key so that changing them still shows.
    Credentials in URLs are masked.
    """
    out: dict[str, str] = {}
    for raw in _logical_lines(text):
        line = _USERINFO.sub(r"\1***@", _strip_comment(raw)).strip()
        if not line:
            continue
        if line.startswith("-"):
            egg = _EGG.search(line)
            out[normalize_name(egg.group(1)) if egg else line] = "" if not egg else line
            continue
        if "://" in line.split("@", 1)[0] or line.startswith(("git+", "file:")):
            egg = _EGG.search(line)
            out[normalize_name(egg.group(1)) if egg else line] = line if egg else ""
            continue
        match = _REQ_NAME.match(line)
        if match:
            out[normalize_name(match.group(1))] = re.sub(r"\s+", " ", match.group(2)).strip()
    return out


def _logical_lines(text: str) -> list[str]:
    """Physical lines joined on trailing backslashes, as pip reads them."""
    return text.replace("\\\r\n", " ").replace("\\\n", " ").splitlines()


def _strip_comment(line: str) -> str:
    """Drop a ``#`` comment: a whole-line one, or one after whitespace (``#egg=`` survives)."""
    if line.lstrip().startswith("#"):
        return ""
    return re.split(r"\s+#", line, maxsplit=1)[0]


def parse_mlmodel(text: str) -> tuple[Signature | None, tuple[str, ...]]:
    """The signature and flavour names of an ``MLmodel`` file; raises ValueError when unreadable."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"MLmodel is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("MLmodel is not a YAML mapping")
    flavors = data.get("flavors")
    names = tuple(sorted(str(k) for k in flavors)) if isinstance(flavors, dict) else ()
    return parse_signature(data.get("signature")), names


def parse_signature(raw: Any) -> Signature | None:
    """MLmodel's ``signature`` (each part a JSON string of column or tensor specs) → Signature."""
    if not isinstance(raw, dict):
        return None
    parts = {part: _parse_specs(raw.get(part), part) for part in ("inputs", "outputs", "params")}
    if not parts["inputs"] and not parts["outputs"]:
        return None
    return Signature(**parts)


def _parse_specs(raw: Any, part: str) -> tuple[ColumnSpec, ...]:
    if raw in (None, "", "null"):
        return ()
    try:
        items = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise ValueError(f"signature {part} is not JSON: {exc}") from exc
    if not isinstance(items, list):
        raise ValueError(f"signature {part} is not a list")
    return tuple(_column(item) for item in items if isinstance(item, dict))


def _column(spec: Mapping[str, Any]) -> ColumnSpec:
    """A comparable type string: ``double``, ``tensor<float32>[-1, 4]``, or compact JSON for
    nested types (arrays, objects, maps); inference params carry their default and shape too."""
    kind = spec.get("type", "")
    if kind == "tensor":
        tensor = spec.get("tensor-spec") or {}
        type_ = f"tensor<{tensor.get('dtype', '?')}>{list(tensor.get('shape') or [])}"
    elif isinstance(kind, str) and set(spec) <= {"name", "type", "required", "default", "shape"}:
        extras = {k: spec[k] for k in ("default", "shape") if spec.get(k) is not None}
        type_ = f"{kind} {json.dumps(extras, sort_keys=True)}" if extras else kind
    else:
        rest = {k: v for k, v in spec.items() if k not in ("name", "required")}
        type_ = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    return ColumnSpec(name=str(spec.get("name") or ""), type=type_, required=bool(spec.get("required", True)))


# -- loading through the registry --------------------------------------------------------


def load_version_info(
    registry: Registry,
    name: str,
    version: str,
    *,
    history_keys: Iterable[str] | None = None,
    max_histories: int = MAX_HISTORY_CALLS,
) -> VersionInfo:
    """One version's diff inputs. Raises only when the version itself cannot be read; ``history_keys``
    defaults to the metrics logged at more than one step, at most ``max_histories`` of them."""
    (info,) = _load_all(registry, [registry.version(name, version)])
    keys = _multi_step(info) if history_keys is None else list(history_keys)
    _fetch_histories(registry, [info], keys[:max_histories])
    return info


def load_diff(
    registry: Registry,
    challenger: Version,
    champion: Version | None,
    *,
    lower_is_better: Iterable[str] = DEFAULT_LOWER_IS_BETTER,
    max_histories: int = MAX_HISTORY_CALLS,
) -> ModelDiff:
    """Load both sides, fetch histories for charts (differing metrics first, one call per metric
    for both runs, at most ``max_histories`` calls), then diff."""
    sides = _load_all(registry, [challenger] + ([champion] if champion else []))
    new, old = sides[0], (sides[1] if champion else None)
    wanted = list(dict.fromkeys(k for side in sides for k in _multi_step(side)))
    differs = {k for k in wanted if old is None or old.metrics.get(k) != new.metrics.get(k)}
    wanted.sort(key=lambda k: (k not in differs, k))
    _fetch_histories(registry, sides, wanted[:max_histories])
    return compute_diff(new, old, lower_is_better=lower_is_better)


def _parallel(tasks: list) -> list:
    """Run independent upstream reads side by side; each task handles its own errors."""
    if len(tasks) <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=min(PARALLEL_READS, len(tasks))) as pool:
        return list(pool.map(lambda task: task(), tasks))


def _load_all(registry: Registry, versions: list[Version]) -> list[VersionInfo]:
    """Each version's run, MLmodel and requirements, all read at once (each task fills its own fields)."""
    infos = []
    tasks = []
    for version in versions:
        info = VersionInfo(
            name=version.name,
            version=version.version,
            run_id=version.run_id,
            source=version.source,
            creation_timestamp=version.creation_timestamp,
            user_id=version.user_id,
            version_tags=dict(version.tags),
        )
        infos.append(info)
        if version.run_id:
            tasks.append(lambda info=info: _load_run(registry, info))
        else:
            info.problems.append("the version has no source run: no params, metrics, run tags or datasets")
        tasks.append(lambda v=version, info=info: _load_mlmodel(registry, v, info))
        tasks.append(lambda v=version, info=info: _load_requirements(registry, v, info))
    _parallel(tasks)
    return infos


def _load_run(registry: Registry, info: VersionInfo) -> None:
    try:
        run = registry.run(info.run_id)
    except RegistryError as exc:
        info.problems.append(f"run {info.run_id} could not be read: {_brief(exc)}")
        return
    meta, data = run.get("info") or {}, run.get("data") or {}
    info.run_name = meta.get("run_name", "") or ""
    info.experiment_id = str(meta.get("experiment_id", "") or "")
    info.params = {p["key"]: p.get("value", "") or "" for p in data.get("params") or () if "key" in p}
    info.run_tags = {t["key"]: t.get("value", "") or "" for t in data.get("tags") or () if "key" in t}
    for m in data.get("metrics") or ():
        if "key" in m:
            info.metrics[m["key"]] = float(m.get("value", "NaN"))
            info.metric_steps[m["key"]] = int(m.get("step", 0) or 0)
    info.datasets = tuple(_dataset(d) for d in (run.get("inputs") or {}).get("dataset_inputs") or ())


def _dataset(item: Mapping[str, Any]) -> DatasetInput:
    ds = item.get("dataset") or {}
    tags = {t.get("key"): t.get("value", "") for t in item.get("tags") or ()}
    return DatasetInput(
        name=ds.get("name", "") or "",
        digest=ds.get("digest", "") or "",
        source_type=ds.get("source_type", "") or "",
        source=ds.get("source", "") or "",
        context=tags.get("mlflow.data.context", "") or "",
        profile=ds.get("profile", "") or "",
    )


def _load_mlmodel(registry: Registry, version: Version, info: VersionInfo) -> None:
    try:
        info.signature, info.flavors = parse_mlmodel(registry.version_artifact_text(version, "MLmodel"))
        info.mlmodel_read = True
    except RegistryError as exc:
        info.problems.append(f"MLmodel could not be read: {_brief(exc)}")
    except ValueError as exc:
        info.problems.append(f"MLmodel could not be parsed: {exc}")


def _load_requirements(registry: Registry, version: Version, info: VersionInfo) -> None:
    try:
        info.requirements = parse_requirements(registry.version_artifact_text(version, "requirements.txt"))
    except RegistryError as exc:
        info.problems.append(f"requirements.txt could not be read: {_brief(exc)}")


def _multi_step(info: VersionInfo) -> list[str]:
    return sorted(k for k, step in info.metric_steps.items() if step > 0)


def _fetch_histories(registry: Registry, sides: list[VersionInfo], keys: list[str]) -> None:
    """One call per metric covering every side's run; a failure costs that chart, not the diff."""
    runs = [s.run_id for s in sides if s.run_id]
    if not runs:
        return

    def fetch(key: str) -> tuple[str, dict | RegistryError]:
        try:
            return key, registry.metric_histories(runs, key, HISTORY_POINTS)
        except RegistryError as exc:
            return key, exc

    for key, histories in _parallel([lambda k=k: fetch(k) for k in keys]):
        if isinstance(histories, RegistryError):
            for side in sides:
                side.problems.append(f"history of metric {key} could not be read: {_brief(histories)}")
            continue
        for side in sides:
            if key in side.metrics and histories.get(side.run_id):
                side.metric_histories[key] = histories[side.run_id]


def _brief(exc: RegistryError) -> str:
    """The error in one short line (MLflow may answer with a whole HTML page)."""
    message = exc.message.strip().splitlines()[0] if exc.message.strip() else ""
    if message.lstrip().startswith("<"):
        message = ""
    message = message[:200]
    return f"{exc.error_code} (HTTP {exc.status})" + (f": {message}" if message else "")
