"""One behavioural diff's runs: both versions' files downloaded by Checkpoint (with its own
credentials, in this process), then each model run in its own isolated process
(``runtime/sandbox.py``) on both versions' input examples, its answer checked as data.

One process per model, never both in one: a hostile challenger must not be able to touch the
champion's predictions. Each process sees a private copy of its own model's files and of the
input examples (``MLmodel`` and the example files), never the other model's code.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from checkpoint.registry import Registry, Version
from checkpoint.review import content
from checkpoint.runtime import sandbox
from checkpoint.runtime.envs import EnvBuildError, Envs

CHILD = Path(sandbox.__file__).with_name("evaluator_child.py")
MAX_ROWS = 1000  # rows of an input example that are run
MAX_MODEL_BYTES = 2 << 30  # a version's files larger than this are not downloaded
MAX_SECONDS = 86400.0  # a duration a run reports beyond this is forged (the deadline is far shorter)
MAX_COLUMNS = 10000  # values in one row of predictions (a class-probability row)
EXAMPLE_FILES = ("MLmodel", "input_example.json", "serving_input_example.json")


class EvaluationError(Exception):
    """The diff could not be run at all (files unreadable, no isolation): its reason."""


@dataclass(frozen=True)
class Runner:
    """Runs models as ``isolation`` allows, within ``limits``."""

    isolation: sandbox.Isolation
    limits: sandbox.Limits
    hidden: tuple[Path, ...] = ()  # Checkpoint's private paths (Settings.private_paths)
    envs: Envs | None = None  # each model in its own environment (CHECKPOINT_EVALUATOR_ENV=uv), else Checkpoint's

    def run(
        self,
        registry: Registry,
        versions: dict[str, Version | None],
        datasets: Mapping[str, Path] | None = None,
        workdir: Path | None = None,
    ) -> dict[str, dict | None]:
        """Each existing side's answer (see :func:`read_answer`); None for a missing side.
        ``datasets``: prepared features (``datasets.py``) each model predicts too, its answers
        left in ``workdir`` (given: the caller scores them, then removes it)."""
        with tempfile.TemporaryDirectory(prefix="checkpoint-behaviour-") as tmp:
            root = workdir or Path(tmp)
            root.chmod(0o711)  # the unprivileged runs may pass through, not list
            sources = root / "sources"
            sources.mkdir(mode=0o700)
            present = {side: v for side, v in versions.items() if v is not None}
            for side, version in present.items():
                download(registry, version, sources / side)
            return {
                side: (self.run_side(root, sources, side, present, datasets or {}) if side in present else None)
                for side in versions
            }

    def run_side(
        self, root: Path, sources: Path, side: str, present: dict[str, Version], datasets: Mapping[str, Path] | None = None
    ) -> dict:
        """Run ``side``'s model on every side's input example (and the datasets' features) in its own process."""
        place = root / f"run-{side}"
        place.mkdir(mode=0o700)
        shutil.copytree(sources / side, place / "model")
        for name, features in (datasets or {}).items():
            (place / "datasets").mkdir(exist_ok=True)
            shutil.copyfile(features, place / "datasets" / f"{name}.parquet")
        for name in present:
            examples = place / "examples" / name
            examples.mkdir(parents=True)
            for file in EXAMPLE_FILES:
                if (sources / name / file).is_file():
                    shutil.copyfile(sources / name / file, examples / file)
        home, answers = place / "home", place / "answers"
        home.mkdir()
        answers.mkdir()  # the datasets' predictions files: the one place besides home it may write
        try:
            python, binds = self.python_for(place)
        except (EnvBuildError, OSError) as exc:
            return {"error": f"environment build failed: {exc}"}
        if self.isolation.uid is not None:
            for path in (place, home, answers):
                os.chown(path, self.isolation.uid, self.isolation.gid or -1)
        job = {
            "model": "model",
            "examples": {name: f"examples/{name}" for name in present},
            "max_rows": MAX_ROWS,
            "datasets": {name: f"datasets/{name}.parquet" for name in datasets or {}},
        }
        outcome = sandbox.run(
            [python, "-I", "-B", str(CHILD)],
            stdin=json.dumps(job).encode(),
            cwd=place,
            env=sandbox.scrubbed_env(home),
            limits=self.limits,
            isolation=self.isolation,
            view=sandbox.View(readonly=(place,), writable=(home, answers), hidden=self.hidden, binds=binds),
        )
        return read_answer(outcome, set(present), set(datasets or {}))

    def python_for(self, place: Path) -> tuple[str, tuple[tuple[Path, Path], ...]]:
        """The interpreter the run uses, and what the view binds for it: Checkpoint's own, or the
        model's environment (built or cached), shown read-only at ``place/env`` when isolated."""
        if self.envs is None:
            return sys.executable, ()
        built = self.envs.ensure(place / "model")
        if not self.isolation.isolated:
            return str(built / "bin" / "python"), ()
        (place / "env").mkdir()
        return str(place / "env" / "bin" / "python"), ((built, place / "env"),)


def download(registry: Registry, version: Version, into: Path) -> None:
    """``version``'s files, read through MLflow's artifact proxy into ``into``."""
    place = content.version_place(registry, version)
    if place is None or place.root != content.SERVED:
        raise EvaluationError(
            f"the files of {version.name} v{version.version} are stored at {place or 'an unknown place'}, which "
            "Checkpoint reads only through MLflow's artifact proxy (--serve-artifacts)"
        )
    files = content.listing(registry, place)
    if not any(rel == "MLmodel" for rel, _ in files):
        raise EvaluationError(f"{version.name} v{version.version} is not an MLflow model: its files hold no MLmodel")
    total = sum(size for _, size in files)
    if total > MAX_MODEL_BYTES:
        raise EvaluationError(f"the files of {version.name} v{version.version} take {total:,} bytes, over {MAX_MODEL_BYTES:,}")
    into.mkdir(parents=True)
    for rel, size in files:
        parts = content.split_path(rel)
        if not parts or any(p in ("", ".", "..") for p in parts):
            raise EvaluationError(f"the file name {rel!r} in {version.name} v{version.version} is not a plain path")
        target = into.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for chunk in registry.read_artifact(f"{place.path}/{rel}", limit=size):
                out.write(chunk)


def read_answer(outcome: sandbox.Outcome, examples: set[str], datasets: Collection[str] = ()) -> dict:
    """A run's answer, checked field by field (it is whatever the model's code made of it):
    ``{"error"}`` when the model could not be run or its answer is not one the evaluator could
    have written, else ``{"load_seconds", "examples": {name: {"rows", "predictions", "seconds"}
    | {"error"} | {"unreadable"}}, "datasets": {name: {"rows", "seconds", "file"} | {"error"}}}``
    (the file where a dataset's predictions are, checked by the scorer)."""
    if outcome.problem:
        return {"error": f"{outcome.problem}{_tail(outcome)}"}
    if outcome.returncode != 0:
        return {"error": f"the evaluator exited with status {outcome.returncode}{_signal(outcome.returncode)}{_tail(outcome)}"}
    try:
        data = json.loads(outcome.output)
        load = data["load"]
        if "error" in load:
            return {"error": f"the model failed to load: {_text(load['error'])}"}
        answers: dict[str, dict] = {}
        for name in examples:
            got = data["examples"].get(name)
            if not isinstance(got, dict):
                answers[name] = {"error": "no answer for this input example"}
            elif "unreadable" in got or "error" in got:
                answers[name] = {k: _text(v) for k, v in got.items() if k in ("unreadable", "error")}
            else:
                answers[name] = {
                    "rows": _rows(got["rows"]),
                    "predictions": _predictions(got["predictions"]),
                    "seconds": _seconds(got["seconds"]),
                }
        return {"load_seconds": _seconds(load["seconds"]), "examples": answers, "datasets": _datasets(data, datasets)}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return {"error": f"the evaluator's answer was malformed ({type(exc).__name__}: {str(exc)[:200]})"}


def _seconds(value: object) -> float:
    """A duration the run reports: a finite number of seconds, from 0 to a day."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a duration must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise ValueError(f"a duration of {value!r} s is not possible")
    return float(value)


def _rows(value: object) -> int:
    """The rows an input example had: at most the rows the evaluator runs."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"rows must be a number, not {type(value).__name__}")
    if not 0 <= value <= MAX_ROWS:
        raise ValueError(f"{value!r} rows is not possible (0 to {MAX_ROWS})")
    return value


def _predictions(value: object) -> list:
    """One prediction per row, at most ``MAX_ROWS``: each a plain value or a flat list of them."""
    if not isinstance(value, list):
        raise TypeError("predictions must be a list")
    if len(value) > MAX_ROWS:
        raise ValueError(f"{len(value):,} predictions is over the {MAX_ROWS} rows the evaluator runs")
    for item in value:
        if not _plain(item) and not (isinstance(item, list) and len(item) <= MAX_COLUMNS and all(map(_plain, item))):
            raise TypeError(f"a prediction must be a number, a string or a flat list of them, not {str(item)[:60]}")
    return value


def _plain(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 1000)


def _datasets(data: dict, names: Collection[str]) -> dict[str, dict]:
    """The datasets' part of an answer: each file where the child was told to write it, or its error."""
    out: dict[str, dict] = {}
    given = data.get("datasets") or {}
    for name in names:
        got = given.get(name)
        if not isinstance(got, dict):
            out[name] = {"error": "no answer for this dataset"}
        elif "error" in got:
            out[name] = {"error": _text(got["error"])}
        elif got.get("file") != f"answers/{name}.json" or not isinstance(got.get("rows"), int):
            raise TypeError(f"the answer for dataset {name} names another file or no row count")
        else:
            out[name] = {"rows": _count(got["rows"]), "seconds": _seconds(got["seconds"]), "file": got["file"]}
    return out


def _count(value: object) -> int:
    """A dataset's row count as the run reports it: a whole number, not negative."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} rows is not possible")
    return value


def _text(value) -> str:
    return str(value)[:2000]


def _tail(outcome: sandbox.Outcome) -> str:
    lines = [line for line in outcome.stderr_tail.splitlines() if line.strip()][-3:]
    return (": " + " | ".join(lines))[:1500] if lines else ""


def _signal(returncode: int | None) -> str:
    names = {-9: " (killed)", -24: " (CPU time limit)", -25: " (file size limit)", 137: " (killed)", 152: " (CPU time limit)"}
    return names.get(returncode or 0, "")
