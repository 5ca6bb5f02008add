"""The behavioural diff's evaluation datasets (a rule's ``evaluation:``, ``evaluation.py``).

Who does what, and why there:

* **this process** downloads each dataset through MLflow's artifact proxy with Checkpoint's
  credentials (a model never could: it has neither), bounded in size, and hashes its bytes
  (the dataset digest, part of the cache key of its scores);
* **a scorer process** (``runtime/evaluator_scoring.py``, isolated like a model run: no
  secrets, no network, limits) reads the file (a decompression bomb or a hostile parquet must
  not reach the secrets either), keeps ``max_rows`` rows and splits off the target, which the
  models never see (a model that could read it could fake its own score);
* **each model's run** (``runner.py``) predicts on the features and writes its predictions and
  latencies as data;
* **the scorer again** checks those files (types, sizes, finite numbers) and computes the
  numbers; it never loads a model. Its answer is checked once more here (:func:`checked`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review import content
from checkpoint.review.behaviour.evaluation import EvaluationSet
from checkpoint.review.behaviour.runner import EvaluationError, Runner, _tail
from checkpoint.runtime import sandbox

SCORER = Path(sandbox.__file__).with_name("evaluator_scoring.py")
MAX_DATASET_BYTES = 1 << 30  # a dataset file larger than this is refused before it is read
ANSWER_MAX = 1 << 30  # a model's predictions file larger than this is refused
Cached = Callable[[str, EvaluationSet], dict | None]  # (dataset digest, entry) → stored scores
Keep = Callable[[str, EvaluationSet, dict], None]


def place_of(registry: Registry, uri: str) -> content.Place:
    """Where a dataset's file is, in the store MLflow's artifact proxy serves."""
    parts = urlsplit(uri)
    place: content.Place | None
    if parts.scheme == "models":  # models:/<logged model id>/<path inside it>
        model_id, _, sub = (parts.netloc + parts.path).strip("/").partition("/")
        base = content.resolve_uri(registry, f"models:/{model_id}")
        place = base.child(sub) if base else None
    else:
        place = content.resolve_uri(registry, uri)
    if place is None or place.root != content.SERVED:
        raise EvaluationError(
            f"{uri} is stored at {place or 'an unknown place'}, which Checkpoint reads only through MLflow's "
            "artifact proxy (--serve-artifacts)"
        )
    return place


def download(registry: Registry, entry: EvaluationSet, into: Path) -> str:
    """The dataset's file, read into ``into``; its digest (sha256 of its bytes)."""
    try:
        place = place_of(registry, entry.uri)
        folder, _, name = place.path.rpartition("/")
        sizes = {n.rsplit("/", 1)[-1]: size for n, is_dir, size in registry.list_artifacts(folder) if not is_dir}
        if name not in sizes:
            raise EvaluationError(f"{entry.uri} does not exist (no file {name} in {folder or 'the store'})")
        if sizes[name] > MAX_DATASET_BYTES:
            raise EvaluationError(f"{entry.uri} takes {sizes[name]:,} bytes, over {MAX_DATASET_BYTES:,}")
        digest = hashlib.sha256()
        with open(into, "wb") as out:
            for chunk in registry.read_artifact(place.path, limit=MAX_DATASET_BYTES):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()
    except RegistryError as exc:
        raise EvaluationError(f"{entry.uri} could not be read from MLflow: {exc.message[:300]}") from exc


class Datasets:
    """Scores the pair on a rule's datasets (see the module's docstring)."""

    def __init__(self, runner: Runner, read_at: str = "", reuse_examples: bool = False) -> None:
        # read_at: when the files are read (shown with each digest); reuse_examples: the models
        # are not run at all when every dataset's scores are cached (a refresh, nothing changed).
        self.runner, self.read_at, self.reuse_examples = runner, read_at, reuse_examples

    def run(
        self,
        registry: Registry,
        versions: dict[str, Version | None],
        sets: tuple[EvaluationSet, ...],
        root: Path,
        cached: Cached,
        keep: Keep,
    ) -> tuple[dict[str, dict | None] | None, list[dict]]:
        """The models' runs (``Runner.run``'s answers, the datasets' part used here; None when
        none was needed, see ``reuse_examples``) and each dataset's scores, in the policy's
        order; an entry whose dataset failed holds ``error``."""
        results: dict[str, dict] = {}
        prepared: dict[str, Path] = {}
        digests: dict[str, str] = {}
        for entry in sets:
            shown = {"name": entry.name, "uri": entry.uri, "target": entry.target, "read_at": self.read_at or None}
            folder = root / f"data-{entry.name}"
            folder.mkdir(mode=0o700, parents=True)
            try:
                digests[entry.name] = download(registry, entry, folder / f"source{entry.format}")
                shown["digest"] = digests[entry.name]
                stored = cached(digests[entry.name], entry)
                if stored is not None:
                    results[entry.name] = shown | stored
                    continue
                if versions.get("champion") is None:
                    raise EvaluationError("there is no champion: nothing to compare with on this dataset")
                job = {"mode": "prepare", "source": f"source{entry.format}", "format": entry.format}
                self._score(folder, job | {"target": entry.target, "slices": list(entry.slices), "max_rows": entry.max_rows})
                prepared[entry.name] = folder / "features.parquet"
            except EvaluationError as exc:
                shown["error"] = str(exc)
            results[entry.name] = shown
        if not prepared and self.reuse_examples:
            return None, [results[e.name] for e in sets]
        runs = self.runner.run(registry, versions, prepared, workdir=root)
        for entry in sets:
            if entry.name not in prepared:
                continue
            try:
                scores = self._side_answers(root, runs, entry)
                scores = self._score(root / f"data-{entry.name}", scores)
                keep(digests[entry.name], entry, scores)
                results[entry.name] |= scores
            except EvaluationError as exc:
                results[entry.name]["error"] = str(exc)
        return runs, [results[e.name] for e in sets]

    def _side_answers(self, root: Path, runs: Mapping[str, dict | None], entry: EvaluationSet) -> dict:
        """The scoring job of one dataset, both models' predictions files copied beside it."""
        answers = {}
        for side in ("champion", "challenger"):
            run = runs.get(side) or {}
            if run.get("error"):
                raise EvaluationError(f"the {side} could not be run")
            got = (run.get("datasets") or {}).get(entry.name) or {"error": "no answer"}
            if "error" in got:
                last = [line for line in str(got["error"]).splitlines() if line.strip()][-1:] or [""]
                raise EvaluationError(f"the {side} failed on {entry.name}: {last[0][:500]}")
            copy_answer(root / f"run-{side}", entry.name, root / f"data-{entry.name}" / f"{side}.json")
            answers[side] = f"{side}.json"
        return {"mode": "score", "target": entry.target, "slices": list(entry.slices), "answers": answers}

    def _score(self, folder: Path, job: dict) -> dict:
        """Run the scorer on ``job`` in ``folder``, isolated; its answer, checked."""
        home = folder / "home"
        home.mkdir(exist_ok=True)
        if self.runner.isolation.uid is not None:
            for path in folder.rglob("*"):
                os.chown(path, self.runner.isolation.uid, self.runner.isolation.gid or -1, follow_symlinks=False)
            os.chown(folder, self.runner.isolation.uid, self.runner.isolation.gid or -1)
        outcome = sandbox.run(
            [sys.executable, "-I", "-B", str(SCORER)],
            stdin=json.dumps(job).encode(),
            cwd=folder,
            env=sandbox.scrubbed_env(home),
            limits=self.runner.limits,
            isolation=self.runner.isolation,
            view=sandbox.View(writable=(folder,), hidden=self.runner.hidden),  # it parses files a model author made
        )
        if not outcome.ok:
            why = outcome.problem or f"exited with status {outcome.returncode}"
            raise EvaluationError(f"the scorer {why}{_tail(outcome)}")
        try:
            answer = checked(json.loads(outcome.output))
        except (ValueError, TypeError) as exc:
            raise EvaluationError(f"the scorer's answer was malformed: {str(exc)[:200]}") from exc
        if "error" in answer:
            raise EvaluationError(str(answer["error"]))
        return answer


def copy_answer(place: Path, name: str, into: Path) -> None:
    """Copy ``answers/<name>.json`` out of a model run's directory, which the run controls:
    no link followed (a link to a secret file would have it read here), a plain file, bounded."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        folder = os.open(place / "answers", flags | os.O_DIRECTORY)
        try:
            fd = os.open(f"{name}.json", flags | getattr(os, "O_NONBLOCK", 0), dir_fd=folder)
        finally:
            os.close(folder)
    except OSError as exc:
        raise EvaluationError(f"the model's predictions on {name} are missing or not a plain file ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > ANSWER_MAX:
            raise EvaluationError(f"the model's predictions on {name} are not a plain file of at most {ANSWER_MAX:,} bytes")
        with open(into, "wb") as out:
            shutil.copyfileobj(source, out)


TEXT_MAX, LIST_MAX, DEPTH_MAX = 500, 1000, 6


def checked(value, depth: int = 0):
    """The scorer's answer as plain data: text bounded, lists bounded, numbers finite (None
    allowed), no deeper than a few levels. Raises ValueError otherwise."""
    if depth > DEPTH_MAX:
        raise ValueError("nested too deeply")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a number is not finite")
        return value
    if isinstance(value, str):
        return value[:TEXT_MAX]
    if isinstance(value, list):
        if len(value) > LIST_MAX:
            raise ValueError(f"a list of {len(value)} items")
        return [checked(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if len(value) > LIST_MAX or not all(isinstance(k, str) for k in value):
            raise ValueError("an object too large or with keys that are not text")
        return {k[:TEXT_MAX]: checked(v, depth + 1) for k, v in value.items()}
    raise TypeError(f"a {type(value).__name__}")
