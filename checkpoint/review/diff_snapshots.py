"""The request page's diff, rendered from a snapshot instead of MLflow's slow ``runs/get``.

MLflow answers ``runs/get`` for a run of thousands of params and metrics in hundreds of
milliseconds, so the page keeps both sides' diff inputs with the request (``diff_snapshots``):
read by the background thread when the request opens and whenever a side moves (an apply, an
outside change, new digests), and read again when a page finds it older than ``MAX_AGE``.

The page never shows a stale diff as current. Its cheap reads (the challenger, and who holds
the target now: one small MLflow call each) give the snapshot's key: both versions' identities
and the content digests the request records for them. A snapshot of other versions or digests
is not used: the page reads MLflow itself (as it did before snapshots) and stores what it read.
A used snapshot shows its time ("as of 12:03 UTC"), and "refreshing" while a newer read is asked
or under way. When MLflow cannot be read at all, the last snapshot is shown with that said.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from checkpoint.clock import Clock
from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review import diff
from checkpoint.review.changes import from_json
from checkpoint.storage.entities import DiffSnapshot, PromoteRequest
from checkpoint.storage.store import Store

log = logging.getLogger("checkpoint.diff")  # the name operators filter the JSON logs on

INTERVAL = 30.0  # the background task's period: a wish another replica made is served within it
LEASE_SECONDS = 120  # a claimed refresh not written by then may be claimed by another worker
MAX_AGE = timedelta(minutes=5)  # a page finding its snapshot older asks for a new read
ROUND = 20  # refreshes per background round
# The most a snapshot may take in the database (compressed); the 2,000 + 2,000 bench pair takes 81 KB.
# A larger one is not kept: that request's page reads MLflow itself, as before snapshots.
MAX_STORED = 8 * 1024 * 1024
AWAIT_SECONDS, AWAIT_POLL = 10.0, 0.05  # a page waits this long, at most, for a read under way
UNDECIDED = ("open", "approved", "failed")  # the champion is whoever holds the target now


@dataclass
class PageDiff:
    """What the request page shows of the diff. ``as_of``: when the shown diff's read began;
    ``refreshing``: a newer read is asked or under way; ``note``: why what is shown may be old.
    ``source`` names the stored snapshot it comes from (request, key, time: a page may keep
    what it rendered of it under that name); the diff itself is computed when first asked for,
    so a page that has it rendered already skips decoding and comparing 4,000 rows."""

    error: str | None = None
    moved: str | None = None
    as_of: datetime | None = None
    refreshing: bool = False
    note: str | None = None
    source: tuple[int, str, datetime] | None = None
    compute: Callable[[], diff.ModelDiff | None] | None = field(default=None, repr=False)
    # The champion the diff compares against ({name, version} or None), when MLflow said which:
    # the page's headline names this one too, so "(replaces v…)" and "against v…" never differ.
    champion: dict | None = None
    champion_read: bool = False

    @cached_property
    def diff(self) -> diff.ModelDiff | None:
        return self.compute() if self.compute is not None else None


def same_version(version: Version | None, snapshot: dict | None) -> bool:
    """Whether ``version`` is the one a request's snapshot names (identity only: the digest is
    shown on its own)."""
    if version is None or not snapshot:
        return version is None and not snapshot
    return all(snapshot.get(key) == value for key, value in version.identity().items())


def snapshot_key(item: PromoteRequest, challenger: Version, champion: Version | None) -> str:
    """Both sides' identities and the content digests the request records for them (a digest
    the workflow sees change is recorded on the request, so the key changes with it)."""

    def digest(version: Version | None, recorded: dict | None) -> str | None:
        return (recorded or {}).get("digest") if version is not None and same_version(version, recorded) else None

    sides = [
        challenger.identity(),
        digest(challenger, item.challenger),
        champion.identity() if champion else None,
        digest(champion, item.champion),
    ]
    return hashlib.sha256(json.dumps(sides, sort_keys=True).encode()).hexdigest()


class DiffSnapshots:
    """Reading, keeping and showing diff snapshots (``services.py`` builds one)."""

    def __init__(
        self,
        store: Store,
        registry_for: Callable[[str], Registry],
        clock: Clock,
        wake: Callable[[], object] | None = None,
    ) -> None:
        self.store, self.registry_for, self.clock, self.wake = store, registry_for, clock, wake

    # -- asking --------------------------------------------------------------------------

    def want(self, request_ids: Iterable[int]) -> None:
        """Ask the background thread for new reads of these requests' diffs; never raises."""
        try:
            self.store.want_diff_snapshots(request_ids)
        except Exception:  # the page reads MLflow itself when no snapshot fits
            log.warning("could not ask for diff snapshots", exc_info=True)
            return
        if self.wake is not None:
            self.wake()

    # -- the page ------------------------------------------------------------------------

    def for_page(self, item: PromoteRequest) -> PageDiff:
        """The diff for ``item``'s page: from its snapshot when that is of the versions the page
        compares now, else read from MLflow now (and kept)."""
        if not item.challenger:
            return PageDiff()
        registry = self.registry_for(item.workspace)
        stored = self.store.diff_snapshot(item.id)
        try:
            challenger, champion = self.sides(item, registry)
        except RegistryError as exc:
            return self._unreadable(stored, f"MLflow could not be read for the diff: {exc.message}")
        if challenger is None:
            gone = f"{item.challenger.get('name')} v{item.challenger.get('version')}"
            return PageDiff(error=f"the challenger ({gone}) no longer exists")
        moved = _moved(item, challenger, champion)
        compared = ({"name": champion.name, "version": champion.version} if champion else None, True)
        key = snapshot_key(item, challenger, champion)
        if stored is not None and stored.key != key and self._reading(stored):
            stored = self._await_read(item.id)  # the same read, under way: not twice at once
        if stored is not None and stored.key == key and diff.readable(stored.data) and stored.taken_at is not None:
            refreshing = self._refreshing(stored)
            if not refreshing and self.clock.now() - stored.taken_at > MAX_AGE:
                self.want([item.id])
                refreshing = True
            source = (item.id, key, stored.taken_at)
            decoded = _decoded(stored.data or b"")
            return PageDiff(None, moved, stored.taken_at, refreshing, _failed(stored), source, decoded, *compared)
        taken_at = self.clock.now()
        new, old = diff.load_sides(registry, challenger, champion, fresh=True)
        kept = self._keep(item.id, key, new, old, taken_at)
        computed = diff.compute_diff(new, old)
        kept_as = (item.id, key, taken_at) if kept else None
        return PageDiff(None, moved, taken_at, source=kept_as, compute=lambda: computed, champion=compared[0], champion_read=True)

    def read_now(self, item: PromoteRequest) -> PageDiff:
        """The diff of one change of a batch, read from MLflow now and not kept: the one stored
        snapshot a request has would be overwritten by each of its changes in turn."""
        if not item.challenger:
            return PageDiff()
        registry = self.registry_for(item.workspace)
        try:
            challenger, champion = self.sides(item, registry)
            if challenger is None:
                gone = f"{item.challenger.get('name')} v{item.challenger.get('version')}"
                return PageDiff(error=f"the challenger ({gone}) no longer exists")
            new, old = diff.load_sides(registry, challenger, champion, fresh=False)
        except RegistryError as exc:
            return PageDiff(error=f"MLflow could not be read for the diff: {exc.message}")
        computed = diff.compute_diff(new, old)
        compared = {"name": champion.name, "version": champion.version} if champion else None
        return PageDiff(
            None,
            _moved(item, challenger, champion),
            self.clock.now(),
            compute=lambda: computed,
            champion=compared,
            champion_read=True,
        )

    def _reading(self, stored: DiffSnapshot) -> bool:
        """Whether a worker holds a live claim on the request's refresh (it is reading MLflow now)."""
        lease_before = self.clock.now() - timedelta(seconds=LEASE_SECONDS)
        return stored.claimed_at is not None and stored.claimed_at >= lease_before

    def _await_read(self, request_id: int) -> DiffSnapshot | None:
        """The snapshot once the read under way is written (polled, at most ``AWAIT_SECONDS``):
        a page opened the instant its request opens would otherwise ask MLflow for the same two
        slow runs at the same time as the background thread, and both would wait twice as long."""
        deadline = time.monotonic() + AWAIT_SECONDS
        stored = self.store.diff_snapshot(request_id)
        while stored is not None and self._reading(stored) and time.monotonic() < deadline:
            time.sleep(AWAIT_POLL)
            stored = self.store.diff_snapshot(request_id)
        return stored

    def _refreshing(self, stored: DiffSnapshot) -> bool:
        lease_before = self.clock.now() - timedelta(seconds=LEASE_SECONDS)
        return stored.wanted_at is not None or (stored.claimed_at is not None and stored.claimed_at >= lease_before)

    def _unreadable(self, stored: DiffSnapshot | None, error: str) -> PageDiff:
        """MLflow cannot say which versions the page compares: the last snapshot, said to be
        unchecked, or the error alone."""
        sides = diff.decode_sides(stored.data) if stored is not None and stored.data else None
        if stored is None or sides is None:
            return PageDiff(error=error)
        note = f"{error}. Shown: the last diff read, which may no longer be of the versions the target holds now"
        computed = diff.compute_diff(*sides)
        return PageDiff(None, None, stored.taken_at, self._refreshing(stored), note, compute=lambda: computed)

    def sides(self, item: PromoteRequest, registry: Registry) -> tuple[Version | None, Version | None]:
        """The challenger, and the champion: while undecided, whatever the target holds now (the
        real replacement); once decided, the one frozen at opening."""
        change = from_json(item.change)
        if item.state in UNDECIDED:
            with ThreadPoolExecutor(max_workers=2) as pool:  # two small reads side by side: one round trip
                challenger = pool.submit(change.challenger, registry)
                champion = pool.submit(change.champion, registry)
                return challenger.result(), champion.result()
        champion_ = registry.version(item.champion["name"], item.champion["version"]) if item.champion else None
        return change.challenger(registry), champion_

    def _keep(self, request_id: int, key: str, new: diff.VersionInfo, old: diff.VersionInfo | None, taken_at: datetime) -> bool:
        if new.transient or (old is not None and old.transient):
            return False  # MLflow failed part of the read: shown, never kept
        data, raw = diff.encode_sides(new, old)
        if len(data) > MAX_STORED:
            return False
        try:
            return self.store.save_diff_snapshot(request_id, key, data, raw, taken_at)
        except Exception:  # the page has its diff; the next view reads again
            log.warning("could not keep the diff snapshot of request #%s", request_id, exc_info=True)
            return False

    # -- the background task -------------------------------------------------------------

    def run(self) -> int:
        """Serve asked refreshes, each claimed by one worker of one replica; returns how many
        snapshots this call wrote."""
        lease_before = self.clock.now() - timedelta(seconds=LEASE_SECONDS)
        written = 0
        for request_id in self.store.wanted_diff_snapshots(lease_before, ROUND):
            claimed = self.store.claim_diff_snapshot(request_id, lease_before)
            if claimed is not None:
                written += self._refresh(request_id, claimed)
        return written

    def _refresh(self, request_id: int, claimed: datetime) -> bool:
        try:
            item = self.store.get(request_id)
            registry = self.registry_for(item.workspace)
            challenger, champion = self.sides(item, registry) if item.challenger else (None, None)
            if challenger is None:
                self.store.fail_diff_snapshot(request_id, claimed, "the challenger no longer exists")
                return False
            new, old = diff.load_sides(registry, challenger, champion, fresh=True)
            if new.transient or (old is not None and old.transient):
                problems = "; ".join([*new.problems, *(old.problems if old else [])])
                self.store.fail_diff_snapshot(request_id, claimed, f"MLflow failed part of the read: {problems}")
                return False
            data, raw = diff.encode_sides(new, old)
            if len(data) > MAX_STORED:
                too_big = f"the diff's inputs take {len(data):,} bytes compressed, over {MAX_STORED:,}: not kept"
                self.store.fail_diff_snapshot(request_id, claimed, too_big)
                return False
            return self.store.save_diff_snapshot(
                request_id, snapshot_key(item, challenger, champion), data, raw, claimed, claimed_at=claimed
            )
        except Exception as exc:  # one request's failure must not stop the round
            log.warning("diff snapshot of request #%s failed", request_id, exc_info=True)
            self.store.fail_diff_snapshot(request_id, claimed, f"{type(exc).__name__}: {exc}")
            return False


def _moved(item: PromoteRequest, challenger: Version, champion: Version | None) -> str | None:
    moved = []
    if not same_version(champion, item.champion):
        before = f"v{item.champion['version']}" if item.champion else "none"
        moved.append(f"champion was {before} at opening, is {'v' + champion.version if champion else 'none'} now")
    if not same_version(challenger, item.challenger):
        moved.append("the challenger version changed")
    return "; ".join(moved) or None


def _decoded(data: bytes) -> Callable[[], diff.ModelDiff | None]:
    def compute() -> diff.ModelDiff | None:
        sides = diff.decode_sides(data)
        return diff.compute_diff(*sides) if sides is not None else None

    return compute


def _failed(stored: DiffSnapshot) -> str | None:
    return f"the last refresh failed: {stored.error}" if stored.error else None
