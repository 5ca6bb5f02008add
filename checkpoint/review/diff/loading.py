"""Filling the diff's inputs through the registry adapter. Never raises for what a version
merely lacks (a run, an artifact): that is recorded in ``problems``, because a half-known diff
is still worth reviewing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from checkpoint.registry import Registry, RegistryError, RegistryUnavailable, Version
from checkpoint.review.diff.artifacts import parse_mlmodel, parse_requirements
from checkpoint.review.diff.compare import DEFAULT_LOWER_IS_BETTER, compute_diff
from checkpoint.review.diff.types import DatasetInput, ModelDiff, VersionInfo

MAX_HISTORY_CALLS = 24
# Upstream reads of one diff run side by side: the page costs the slowest call, not the sum.
PARALLEL_READS = 8
HISTORY_POINTS = 200


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
    """Load both sides (:func:`load_sides`), then diff."""
    new, old = load_sides(registry, challenger, champion, max_histories=max_histories)
    return compute_diff(new, old, lower_is_better=lower_is_better)


def load_sides(
    registry: Registry,
    challenger: Version,
    champion: Version | None,
    *,
    max_histories: int = MAX_HISTORY_CALLS,
    fresh: bool = False,
) -> tuple[VersionInfo, VersionInfo | None]:
    """Both sides' diff inputs, with histories for charts (differing metrics first, one call per
    metric for both runs, at most ``max_histories`` calls): what a diff snapshot keeps.
    ``fresh``: nothing from the registry adapter's cache (the snapshot's time must be true)."""
    sides = _load_all(registry, [challenger] + ([champion] if champion else []), fresh)
    new, old = sides[0], (sides[1] if champion else None)
    wanted = list(dict.fromkeys(k for side in sides for k in _multi_step(side)))
    differs = {k for k in wanted if old is None or old.metrics.get(k) != new.metrics.get(k)}
    wanted.sort(key=lambda k: (k not in differs, k))
    _fetch_histories(registry, sides, wanted[:max_histories])
    return new, old


def _parallel(tasks: list) -> list:
    """Run independent upstream reads side by side; each task handles its own errors."""
    if len(tasks) <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=min(PARALLEL_READS, len(tasks))) as pool:
        return list(pool.map(lambda task: task(), tasks))


def _load_all(registry: Registry, versions: list[Version], fresh: bool = False) -> list[VersionInfo]:
    """Each version's run, MLmodel and requirements, all read at once (each task fills its own fields)."""
    infos = []
    tasks: list[Callable[[], None]] = []
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
            tasks.append(partial(_load_run, registry, info, fresh))
        else:
            info.problems.append("the version has no source run: no params, metrics, run tags or datasets")
        tasks.append(partial(_load_mlmodel, registry, version, info, fresh))
        tasks.append(partial(_load_requirements, registry, version, info, fresh))
    _parallel(tasks)
    return infos


def _load_run(registry: Registry, info: VersionInfo, fresh: bool = False) -> None:
    try:
        run = registry.run(info.run_id, fresh=True) if fresh else registry.run(info.run_id)
    except RegistryError as exc:
        info.problems.append(f"run {info.run_id} could not be read: {_brief(exc)}")
        info.transient |= _transient(exc)
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


def _load_mlmodel(registry: Registry, version: Version, info: VersionInfo, fresh: bool = False) -> None:
    try:
        info.signature, info.flavors = parse_mlmodel(_artifact(registry, version, "MLmodel", fresh))
        info.mlmodel_read = True
    except RegistryError as exc:
        info.problems.append(f"MLmodel could not be read: {_brief(exc)}")
        info.transient |= _transient(exc)
    except ValueError as exc:
        info.problems.append(f"MLmodel could not be parsed: {exc}")


def _load_requirements(registry: Registry, version: Version, info: VersionInfo, fresh: bool = False) -> None:
    try:
        info.requirements = parse_requirements(_artifact(registry, version, "requirements.txt", fresh))
    except RegistryError as exc:
        info.problems.append(f"requirements.txt could not be read: {_brief(exc)}")
        info.transient |= _transient(exc)


def _artifact(registry: Registry, version: Version, path: str, fresh: bool) -> str:
    return registry.version_artifact_text(version, path, fresh=True) if fresh else registry.version_artifact_text(version, path)


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
                side.transient |= _transient(histories)
            continue
        for side in sides:
            if key in side.metrics and histories.get(side.run_id):
                side.metric_histories[key] = histories[side.run_id]


def _transient(exc: RegistryError) -> bool:
    """Whether a failed read may work next time (MLflow unreachable or failing, not a refusal)."""
    return isinstance(exc, RegistryUnavailable) or exc.status >= 500 or exc.status == 429


def _brief(exc: RegistryError) -> str:
    """The error in one short line (MLflow may answer with a whole HTML page)."""
    message = exc.message.strip().splitlines()[0] if exc.message.strip() else ""
    if message.lstrip().startswith("<"):
        message = ""
    message = message[:200]
    return f"{exc.error_code} (HTTP {exc.status})" + (f": {message}" if message else "")
