"""Behavioural diffs of requests: asked for when a request opens or is viewed, run by the
background thread (``run``, one at a time per machine), stored per pair of contents, and
shown as data on the request page and in its JSON.

The key is the champion's and the challenger's content digests (the ones the request
records) and what they run on, so the same pair is never scored twice, and a side whose files
change gets a new diff. A page never waits: it reads the stored row, asking for one (a single
INSERT) when there is none.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

from checkpoint.clock import Clock
from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review import content
from checkpoint.review.behaviour.compare import summarise
from checkpoint.review.behaviour.datasets import Datasets
from checkpoint.review.behaviour.evaluation import EvaluationSet, entries_key, from_data
from checkpoint.review.behaviour.runner import EvaluationError, Runner
from checkpoint.storage.behaviour import ERROR
from checkpoint.storage.entities import Behaviour, PromoteRequest
from checkpoint.storage.store import Store

log = logging.getLogger("checkpoint.evaluator")  # the name operators filter the JSON logs on

INTERVAL = 20.0  # the background task's period; asking for a diff wakes the thread at once
INPUTS = "input-examples-v1"  # what the pair runs on (a rule's datasets add their entries)
MODES = ("isolated", "unisolated", "off")
OFF = "behavioural diffs are off here (CHECKPOINT_EVALUATOR=off)"


def key_of(champion_digest: str | None, challenger_digest: str, inputs: str = INPUTS) -> str:
    return hashlib.sha256(json.dumps([champion_digest, challenger_digest, inputs]).encode()).hexdigest()


def dataset_key(champion_digest: str | None, challenger_digest: str, dataset_digest: str, entry: EvaluationSet) -> str:
    """The key of one dataset's cached scores: the pair, the dataset's bytes and its policy entry."""
    return key_of(champion_digest, challenger_digest, f"dataset:{dataset_digest}:{entries_key((entry,))}")


def _side(snapshot: dict | None) -> dict | None:
    return {k: snapshot.get(k) for k in ("name", "version", "digest")} if snapshot else None


class BehaviourDiffs:
    """The requests' behavioural diffs (``services.py`` builds one). ``mode``: the
    ``CHECKPOINT_EVALUATOR`` setting; ``runner`` None when it is off."""

    def __init__(
        self,
        store: Store,
        registry_for: Callable[[str], Registry],
        clock: Clock,
        runner: Runner | None,
        mode: str,
        lock_path: Path,
        lease: timedelta,
        wake: Callable[[], object] | None = None,
        evaluations_for: Callable[[PromoteRequest], tuple[EvaluationSet, ...]] = lambda item: (),
        finished: Callable[[], object] | None = None,
        checks_again: Callable[[int], object] | None = None,
    ) -> None:
        self.store, self.registry_for, self.clock, self.runner = store, registry_for, clock, runner
        self.mode, self.lock_path, self.lease, self.wake = mode, lock_path, lease, wake
        # The rule's datasets of a request; what to do once diffs finished (judge behaviour checks).
        self.evaluations_for, self.finished, self.checks_again = evaluations_for, finished, checks_again

    # -- asking and showing --------------------------------------------------------------

    def for_request(self, item: PromoteRequest) -> dict | None:
        """What the request's page and JSON show (None: not a request for a model version).
        Asks for the diff when none is stored; never waits for it."""
        if not item.challenger:
            return None
        return self._shown(item.workspace, item.champion, item.challenger, lambda: self.evaluations_for(item))

    def for_versions(
        self, workspace: str, champion: Version, challenger: Version, sets: tuple[EvaluationSet, ...], digest_bytes: int
    ) -> dict:
        """What the compare page shows for ``challenger`` against ``champion`` outside any request:
        the same stored diff a request for the pair would get (same key, same cache), asked for when
        none is stored. Both sides' digests are read now (``digest_bytes``: the digest's budget).
        The sides shown are the ones asked: a row asked first for other versions with the same
        files must not name them to a reader of these."""
        if self.mode == "off" or self.runner is None:
            return {"state": ERROR, "reason": OFF}
        registry = self.registry_for(workspace)
        sides = {
            side: {**v.identity(), **content.digest(registry, v, digest_bytes).to_json()}
            for side, v in (("champion", champion), ("challenger", challenger))
        }
        shown = self._shown(workspace, sides["champion"], sides["challenger"], lambda: sets)
        return shown | {side: _side(snapshot) for side, snapshot in sides.items() if side in shown}

    def _shown(
        self, workspace: str, champion: dict | None, challenger: dict, sets_of: Callable[[], tuple[EvaluationSet, ...]]
    ) -> dict:
        if self.mode == "off" or self.runner is None:
            return {"state": ERROR, "reason": OFF}
        challenger_digest = challenger.get("digest")
        sides = (("challenger", challenger), ("champion", champion))
        missing = [side for side, snap in sides if snap and not snap.get("digest")]
        if missing or not challenger_digest:
            why = challenger.get("digest_error") or (champion or {}).get("digest_error") or "no content digest was recorded"
            return {"state": ERROR, "reason": f"the {' and '.join(missing) or 'challenger'}'s files could not be read: {why}"}
        sets = sets_of()
        inputs = f"{INPUTS}:{entries_key(sets)}" if sets else INPUTS
        key = key_of((champion or {}).get("digest"), challenger_digest, inputs)
        evaluation = [s.as_data() for s in sets]
        stored = self.store.want_behaviour(key, workspace, _side(champion), _side(challenger) or {}, evaluation)
        if stored.finished_at is None and self.wake is not None:
            self.wake()
        return self.view(stored)

    def view(self, stored: Behaviour) -> dict:
        result = stored.result or {}
        return {
            "state": stored.state,
            "reason": stored.reason,
            "key": stored.key,
            "isolation": result.get("isolation"),
            "champion": stored.champion,
            "challenger": stored.challenger,
            "examples": {k: result.get(k, []) for k in ("inputs", "breaking")} | {"models": result.get("models", {})},
            "datasets": result.get("datasets") or _waiting(stored),
            "finished_at": stored.finished_at.isoformat() if stored.finished_at else None,
        }

    def want(self, request_ids: Iterable[int]) -> None:
        """Ask for the diffs of these requests (the workflow's hook at opening and on moves);
        never raises."""
        for request_id in request_ids:
            try:
                self.for_request(self.store.get(request_id))
            except Exception:  # the page asks again
                log.warning("could not ask for the behavioural diff of request #%s", request_id, exc_info=True)

    def rerun(self, item: PromoteRequest) -> dict | None:
        """Run a diff that ended in an error again; a done one stands (never scored twice)."""
        shown = self.for_request(item)
        if shown and shown.get("key") and shown["state"] == ERROR and self.store.rerun_behaviour(shown["key"]):
            if self.checks_again is not None:
                self.checks_again(item.id)  # its behaviour checks wait for the new run (queued again)
            if self.wake is not None:
                self.wake()
            stored = self.store.behaviour(shown["key"])
            return self.view(stored) if stored else shown
        return shown

    # -- the background task -------------------------------------------------------------

    def run(self) -> int:
        """Run asked diffs, one at a time per machine (a lock file in the data directory);
        returns how many this call finished."""
        if self.runner is None:
            return 0
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another worker on this machine is running one
            finished = 0
            for key in self.store.wanted_behaviours(self.clock.now() - self.lease, limit=5):
                claimed = self.store.claim_behaviour(key, self.clock.now() - self.lease)
                if claimed is None:
                    continue
                stored = self.store.behaviour(key)
                assert stored is not None
                state, reason, result = self._evaluate(stored)
                finished += self.store.finish_behaviour(key, claimed, state, reason, result)
        if finished and self.finished is not None:
            self.finished()  # the behaviour checks waiting for these diffs are judged now
        return finished

    def _evaluate(self, stored: Behaviour) -> tuple[str, str, dict | None]:
        assert self.runner is not None
        isolation = self.runner.isolation
        if not isolation.isolated and self.mode == "isolated":
            return ERROR, f"models are not run here: {isolation.note} (CHECKPOINT_EVALUATOR=unisolated runs them anyway)", None
        try:
            registry = self.registry_for(stored.workspace)
            versions = {side: self._version(registry, getattr(stored, side)) for side in ("champion", "challenger")}
            if versions["challenger"] is None:
                return ERROR, "the challenger version no longer exists", None
            datasets: list[dict] = []
            sets = from_data(stored.evaluation or [])
            if sets:
                with tempfile.TemporaryDirectory(prefix="checkpoint-datasets-") as tmp:
                    runs, datasets = Datasets(self.runner).run(registry, versions, sets, Path(tmp), *self._cache(stored))
            else:
                runs = self.runner.run(registry, versions)
        except (EvaluationError, RegistryError) as exc:
            return ERROR, str(exc.message if isinstance(exc, RegistryError) else exc), None
        except Exception as exc:  # one diff's failure must not end the round
            log.warning("behavioural diff %s failed", stored.key, exc_info=True)
            return ERROR, f"{type(exc).__name__}: {exc}", None
        state, reason, result = summarise(runs, {"champion": stored.champion, "challenger": stored.challenger})
        result["isolation"] = isolation.mode
        result["datasets"] = [d | {"state": ERROR if d.get("error") else "done"} for d in datasets]
        return state, reason, result

    def _cache(self, stored: Behaviour):
        """(cached, keep) of one diff's datasets' scores (``dataset_key``)."""
        digests = ((stored.champion or {}).get("digest"), stored.challenger.get("digest") or "")

        def cached(digest: str, entry: EvaluationSet) -> dict | None:
            found = self.store.behaviour(dataset_key(*digests, digest, entry))
            return found.result if found is not None and found.state == "done" else None

        def keep(digest: str, entry: EvaluationSet, scores: dict) -> None:
            key = dataset_key(*digests, digest, entry)
            self.store.keep_dataset_scores(key, stored.workspace, stored.champion, stored.challenger, digest, scores)

        return cached, keep

    @staticmethod
    def _version(registry: Registry, side: dict | None) -> Version | None:
        if not side:
            return None
        try:
            return registry.version(side["name"], side["version"])
        except RegistryError as exc:
            if exc.not_found:
                return None
            raise


def _waiting(stored: Behaviour) -> list[dict]:
    """The datasets of a diff not finished (or failed as a whole): named, with its state."""
    reason = stored.reason if stored.state == ERROR else ""
    return [
        {"name": e.get("name"), "uri": e.get("uri"), "state": stored.state, "reason": reason} for e in stored.evaluation or ()
    ]
