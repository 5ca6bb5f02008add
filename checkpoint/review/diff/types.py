"""The diff's data: what it compares about a version (inputs) and what it finds (outputs).
Plain dataclasses, no behaviour beyond small derived properties."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

DISPLAY_LIMIT = 200

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
    # A read failed in a way that may pass (MLflow unreachable, a 5xx): a snapshot of it is not kept.
    transient: bool = False


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
