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
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from checkpoint.clock import Clock
from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review import content
from checkpoint.review.behaviour.compare import summarise
from checkpoint.review.behaviour.datasets import Datasets
from checkpoint.review.behaviour.evaluation import EvaluationSet, entries_key, from_data
from checkpoint.review.behaviour.runner import EvaluationError, Runner
from checkpoint.review.behaviour.summary import summary
from checkpoint.storage.behaviour import DONE, ERROR
from checkpoint.storage.entities import Behaviour, EventKind, PromoteRequest
from checkpoint.storage.store import Store

log = logging.getLogger("checkpoint.evaluator")  # the name operators filter the JSON logs on

INTERVAL = 20.0  # the background task's period; asking for a diff wakes the thread at once
INPUTS = "input-examples-v1"  # what the pair runs on (a rule's datasets add their entries)
MODES = ("isolated", "unisolated", "off")
OFF = "behavioural diffs are off here (CHECKPOINT_EVALUATOR=off)"
BEHAVIOUR_FINISHED = EventKind.BEHAVIOUR_FINISHED  # logged only when a webhook subscribes to it by name


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
        key = _key(champion, challenger_digest, sets)
        evaluation = [s.as_data() for s in sets]
        stored = self.store.want_behaviour(key, workspace, _side(champion), _side(challenger) or {}, evaluation)
        if stored.finished_at is None and self.wake is not None:
            self.wake()
        return self.view(stored)

    def key_for(self, item: PromoteRequest) -> tuple[str | None, tuple[EvaluationSet, ...]]:
        """The key of ``item``'s diff (None: a side's digest is missing) and its rule's datasets."""
        sides = (item.challenger, item.champion)
        if not item.challenger or not item.challenger.get("digest") or any(s and not s.get("digest") for s in sides):
            return None, ()
        sets = self.evaluations_for(item)
        return _key(item.champion, item.challenger["digest"], sets), sets

    def view(self, stored: Behaviour) -> dict:
        result = (stored.result or {}) if stored.finished_at is not None else {}  # a refresh's old numbers are not shown
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
        """Ask for the diffs of these requests (the workflow's hook at opening and on moves),
        a finished one with datasets read again (a file replaced at the same URI is scored
        again); never raises."""
        for request_id in request_ids:
            try:
                shown = self.for_request(self.store.get(request_id))
                if shown and shown.get("key") and shown["state"] == DONE and self.store.refresh_behaviour(shown["key"]):
                    if self.wake is not None:
                        self.wake()
            except Exception:  # the page asks again
                log.warning("could not ask for the behavioural diff of request #%s", request_id, exc_info=True)

    def rerun(self, item: PromoteRequest) -> dict | None:
        """Run a diff that ended in an error again; a done one with datasets reads them again
        (scored again only where a file's digest changed); a done one without stands (the same
        pair is never scored twice)."""
        shown = self.for_request(item)
        if not shown or not shown.get("key"):
            return shown
        again = self.store.rerun_behaviour if shown["state"] == ERROR else self.store.refresh_behaviour
        if shown["state"] in (ERROR, DONE) and again(shown["key"]):
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
                told = bool(self.store.subscribers(BEHAVIOUR_FINISHED))  # the event, only for a webhook asking
                users = self._users(stored) if told or stored.result is not None else []
                shown = summary(
                    self.view(replace(stored, state=state, reason=reason, result=result, finished_at=self.clock.now()))
                )
                announce = ([u.id for u in users], shown) if told else None
                if self.store.finish_behaviour(key, claimed, state, reason, result, announce):
                    finished += 1
                    if stored.result is not None and _scores(stored.result) != _scores(result):
                        for user in users:  # a refresh changed the numbers: its requests' checks are judged again
                            self._checks_again(user.id)
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
            previous = stored.result  # a refresh of a done diff: its input examples' part is reused
            if sets:
                with tempfile.TemporaryDirectory(prefix="checkpoint-datasets-") as tmp:
                    datasets_run = Datasets(self.runner, self.clock.now().isoformat(), reuse_examples=previous is not None)
                    runs, datasets = datasets_run.run(registry, versions, sets, Path(tmp), *self._cache(stored))
            else:
                runs = self.runner.run(registry, versions)
        except (EvaluationError, RegistryError) as exc:
            return ERROR, str(exc.message if isinstance(exc, RegistryError) else exc), None
        except Exception as exc:  # one diff's failure must not end the round
            log.warning("behavioural diff %s failed", stored.key, exc_info=True)
            return ERROR, f"{type(exc).__name__}: {exc}", None
        if runs is None and previous is not None:  # every dataset unchanged: no model was run
            state, reason, result = DONE, "", {k: v for k, v in previous.items() if k != "datasets"}
        else:
            state, reason, result = summarise(runs or {}, {"champion": stored.champion, "challenger": stored.challenger})
        result["isolation"] = isolation.mode
        result["datasets"] = [d | {"state": ERROR if d.get("error") else "done"} for d in datasets]
        return state, reason, result

    def _users(self, stored: Behaviour) -> list[PromoteRequest]:
        """The open requests whose diff this is (told when it finishes)."""
        try:
            found = self.store.open_requests_promoting(
                stored.workspace, str(stored.challenger.get("name")), str(stored.challenger.get("version"))
            )
            return [item for item in found if self.key_for(item)[0] == stored.key]
        except Exception:  # telling them is a courtesy: the diff's outcome is stored all the same
            log.warning("could not find the requests of behavioural diff %s", stored.key, exc_info=True)
            return []

    def _checks_again(self, request_id: int) -> None:
        if self.checks_again is not None:
            try:
                self.checks_again(request_id)
            except Exception:  # the next round judges them
                log.warning("could not queue the behaviour checks of request #%s again", request_id, exc_info=True)

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


def _scores(result: dict | None) -> list:
    """What a refresh may change: each dataset's digest, error and numbers (not when it was read)."""
    return [{k: v for k, v in d.items() if k != "read_at"} for d in (result or {}).get("datasets") or ()]


def _waiting(stored: Behaviour) -> list[dict]:
    """The datasets of a diff not finished (or failed as a whole): named, with its state."""
    reason = stored.reason if stored.state == ERROR else ""
    return [
        {"name": e.get("name"), "uri": e.get("uri"), "state": stored.state, "reason": reason} for e in stored.evaluation or ()
    ]


def _key(champion: dict | None, challenger_digest: str, sets: tuple[EvaluationSet, ...]) -> str:
    """The cache key of a pair on its inputs: both content digests and the datasets' entries."""
    inputs = f"{INPUTS}:{entries_key(sets)}" if sets else INPUTS
    return key_of((champion or {}).get("digest"), challenger_digest, inputs)
