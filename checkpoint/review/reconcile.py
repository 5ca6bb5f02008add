"""Settling applies a crash interrupted.

A process that dies (``kill -9``, out of memory, a lost node) between claiming a request
(approved → applying) and recording the outcome leaves it in ``applying``, and nothing else
would ever move it. Once the claim is older than the apply lease, no live apply can still be
working on it (every registry call it makes is bounded by a timeout), so the reconciler asks
MLflow whether the change is there and records what it finds:

* the change is true in MLflow → ``applied`` (the write got through; only its answer was lost);
* it is not → ``failed``, so a person can retry.

It never applies a change itself: a write whose fate is unknown is never sent twice. Every move
is a conditional transition from ``applying`` with a claim older than the lease, so of several
reconcilers (every worker of every replica runs one) only one settles a request, and a live
apply that records its outcome first wins.

The lease is compared with ``updated_at``, which each replica stamps from its own clock (the
injected ``checkpoint.clock``, the system's in production): keep replica clocks in sync (NTP)
to well under the lease.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from checkpoint.clock import SYSTEM, Clock
from checkpoint.registry import Registry, RegistryError
from checkpoint.review import batches, changes
from checkpoint.settings import Settings, default_apply_lease
from checkpoint.storage.entities import APPLIED, APPLYING, FAILED, EventKind, PromoteRequest
from checkpoint.storage.store import Store

log = logging.getLogger("checkpoint.reconcile")  # the name operators filter the JSON logs on
ACTOR = "checkpoint"
NOT_APPLIED = "interrupted while applying; MLflow does not show the change; retry to apply"


@dataclass
class Outcome:
    """What one round did, by request id: for logs and tests."""

    applied: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    # Not moved by this round: MLflow could not say (tried again next round), or another
    # reconciler or the apply itself recorded the outcome first.
    left: list[int] = field(default_factory=list)


@dataclass
class Reconciler:
    """Run at start-up and by the background thread, in every worker of every replica."""

    store: Store
    registry: Registry
    lease: float
    clock: Clock = SYSTEM

    @classmethod
    def for_settings(cls, store: Store, registry: Registry, settings: Settings, clock: Clock = SYSTEM) -> Reconciler:
        safe = default_apply_lease(settings.upstream_read_timeout)
        if settings.apply_lease < safe:
            log.warning(
                "CHECKPOINT_APPLY_LEASE_SECONDS=%s is shorter than an apply may take with these timeouts (%.0f s): "
                "a slow apply may be recorded as failed while it still completes (a retry then finds it applied)",
                settings.apply_lease,
                safe,
            )
        return cls(store, registry, settings.apply_lease, clock)

    @property
    def interval(self) -> float:
        """How often the background thread looks: a few times per lease, at most once a minute."""
        return min(max(self.lease / 3, 1.0), 60.0)

    def run(self) -> Outcome:
        """Settle every request whose apply claim is older than the lease."""
        cutoff = self.clock.now() - timedelta(seconds=self.lease)
        outcome = Outcome()
        for request in self.store.applying_before(cutoff):
            try:
                settled = self._settle(request, cutoff)
            except RegistryError as exc:
                log.warning("request #%s is stuck in applying; MLflow could not say whether it applied: %s", request.id, exc)
                settled = None
            except Exception:  # one bad request must not stop the others
                log.exception("reconciling request #%s failed", request.id)
                settled = None
            if settled == APPLIED:
                outcome.applied.append(request.id)
            elif settled == FAILED:
                outcome.failed.append(request.id)
            else:
                outcome.left.append(request.id)
        return outcome

    def run_safely(self) -> Outcome | None:
        """:meth:`run` at start-up: a failure is logged, never stops the process from serving."""
        try:
            return self.run()
        except Exception:  # the background thread tries again
            log.exception("reconciling interrupted applies at start-up failed")
            return None

    def _settle(self, request: PromoteRequest, cutoff: datetime) -> str | None:
        """``applied`` or ``failed`` when this reconciler moved the request, else None."""
        items = [changes.from_json(part.change) for part in batches.parts(request)]
        missing = [c for c in items if not c.is_true(self.registry.in_workspace(c.workspace))]  # asked where applied
        not_applied = NOT_APPLIED
        if missing and len(missing) < len(items):  # a batch cut short: said plainly; a retry applies the rest
            not_applied = (
                f"interrupted while applying: {len(items) - len(missing)} of {len(items)} changes are in MLflow, "
                f"not {'; '.join(c.describe() for c in missing)}; retry to apply the rest"
            )
        if not missing:
            result = f"found applied in MLflow after an interrupted apply: {'; '.join(c.describe() for c in items)}"
            moved = self.store.transition(
                request.id,
                (APPLYING,),
                APPLIED,
                actor=ACTOR,
                event=EventKind.APPLIED,
                updated_before=cutoff,
                data={"reconciled": True, "result": result},
                apply_result=result,
                applied_at=self.clock.now(),
                reason="reconciled: the change is in MLflow",
            )
            state = APPLIED
        else:
            moved = self.store.transition(
                request.id,
                (APPLYING,),
                FAILED,
                actor=ACTOR,
                event=EventKind.APPLY_FAILED,
                updated_before=cutoff,
                data={"reconciled": True, "error": not_applied},
                apply_result=not_applied,
                reason=not_applied,
            )
            state = FAILED
        if not moved:
            return None  # another reconciler, or the apply itself, recorded it first
        log.warning("request #%s was interrupted while applying; reconciled against MLflow: %s", request.id, state)
        return state
