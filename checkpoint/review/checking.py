"""A request's checks: which its rule declares, their latest results, evaluating them (local ones
at once, HTTP ones queued for the background thread) and what an HTTP check receives; and the
soak (``checks/soak.py``): judged from the timeline, and moved on by the background work once its
time has passed (:meth:`Checking.run_soaks`).

Part of the Workflow (see ``workflow_base.py``): a failed required check holds a request open,
and a check turning to pass may apply it, so evaluating ends in the Workflow's ``_proceed``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from checkpoint import urls
from checkpoint.events import timeline
from checkpoint.identity import User
from checkpoint.review import batches, checks, expiry, rollback, statuses
from checkpoint.review.checks import soak
from checkpoint.review.policy import Rule, Status
from checkpoint.review.representation import request_fields
from checkpoint.review.statuses import Latest
from checkpoint.review.workflow_base import WorkflowBase, WorkflowError, as_actor, digest_of
from checkpoint.storage.entities import (
    APPROVED,
    FAILED,
    OPEN,
    CheckResult,
    EventKind,
    PostedStatus,
    PromoteRequest,
    Waiting,
)
from checkpoint.storage.entities import CHECK_QUEUED as QUEUED

log = logging.getLogger("checkpoint.workflow")  # the name operators filter the JSON logs on

# The soak task: how often it looks (a soak is hours or days), and how many rows per page, pages per round.
SOAK_INTERVAL, SOAK_PAGE, SOAK_PAGES = 60.0, 200, 50


class Checking(WorkflowBase):
    """The checks part of the Workflow."""

    if TYPE_CHECKING:  # defined by Applying, which moves a request on once its checks pass

        def _proceed(self, request_id: int, actor: str) -> PromoteRequest: ...

        def apply(self, request_id: int, actor: str, forced: bool = False) -> PromoteRequest: ...

    def rule_of(self, request: PromoteRequest) -> Rule:
        """The rule a request is reviewed under now (the policy file may have changed): its
        ``rollback:`` fast path for a verified rollback (``review/rollback.py``); for a batch,
        the strictest of its changes' rules (``batches.strictest``)."""
        if batches.is_batch(request):
            return batches.strictest([self.rule_of(part) for part in batches.parts(request)])
        return self.policy.rule_for(request.model_name, request.target, request.workspace, rollback.verified(request))

    def check_specs(self, request: PromoteRequest) -> tuple[checks.Check, ...]:
        """The checks the request's rule declares now (the policy file may have changed); a
        batch runs each change's checks, named by the change's place (``2. auc-gate``)."""
        return tuple(spec for spec, _ in self._checked(request))

    def _checked(self, request: PromoteRequest) -> list[tuple[checks.Check, PromoteRequest]]:
        """Each check with the request (a batch: the change's view) it looks at."""
        if not batches.is_batch(request):
            rule = self.policy.rule_for(request.model_name, request.target, request.workspace)
            return [(spec, request) for spec in rule.checks]
        out: list[tuple[checks.Check, PromoteRequest]] = []
        for i, part in enumerate(batches.parts(request), 1):
            rule = self.policy.rule_for(part.model_name, part.target, part.workspace)
            out.extend((replace(spec, name=f"{i}. {spec.name}"), part) for spec in rule.checks)
        return out

    def check_results(self, request: PromoteRequest, stored: list[CheckResult] | None = None) -> list[CheckResult]:
        """Each declared check with its latest result; one never evaluated shows as pending."""
        specs = self.check_specs(request)
        if not specs:
            return []
        if stored is None:
            stored = self.store.check_results([request.id])[request.id]
        by_name = {r.name: r for r in stored}
        out = []
        at = self.clock.now()
        for spec in specs:
            found = by_name.get(spec.name)
            if found is None or found.kind != spec.kind:
                found = CheckResult(
                    request.id, spec.name, spec.kind, spec.required, checks.PENDING, "not evaluated yet", "", None
                )
            elif found.required != spec.required:
                found = replace(found, required=spec.required)
            if isinstance(spec, checks.SoakCheck) and found.status == checks.PENDING:
                found = replace(found, reason=soak.shown(found.reason, at))  # the time remaining, now
            out.append(found)
        return out

    def soak_waiting(self, request: PromoteRequest, results: list[CheckResult]) -> Waiting | None:
        """What an open request waits for while its soak is pending (``results``: its
        :meth:`check_results`): the soak's end, named by the target the challenger must hold."""
        if request.state != OPEN:
            return None
        specs = {s.name: s for s in self.check_specs(request) if isinstance(s, checks.SoakCheck)}
        for result in results:
            until = soak.ends(result.reason) if result.name in specs and result.status == checks.PENDING else None
            if until is not None:
                return Waiting(soak.SoakCheck.kind, until, specs[result.name].held)
        return None

    def checks_of(self, requests: list[PromoteRequest]) -> dict[int, list[CheckResult]]:
        """:meth:`check_results` for a page of requests, read in one query."""
        wanted = [r.id for r in requests if self.check_specs(r)]
        stored = self.store.check_results(wanted) if wanted else {}
        return {r.id: self.check_results(r, stored[r.id]) if r.id in stored else [] for r in requests}

    def rerun_checks(self, request_id: int, user: User | str) -> PromoteRequest:
        """Evaluate the request's checks again (someone fixed a tag, the receiver is back...)."""
        user = as_actor(user)
        if user.anonymous:
            raise WorkflowError(403, "PERMISSION_DENIED", "sign in (or pick a name) to re-run checks")
        request = self.store.get(request_id)
        if request.state not in (OPEN, FAILED):
            raise WorkflowError(
                409, "INVALID_STATE", f"request #{request_id} is {request.state}; checks run on open or failed requests"
            )
        self._evaluate(request, "manual", user.name)
        return self._proceed(request_id, user.name)

    def check_again(self, request_id: int) -> None:
        """Evaluate an undecided request's checks again, as Checkpoint (its behavioural diff is
        run again: its behaviour checks are queued until that run finishes)."""
        if self.store.get(request_id).state in (OPEN, FAILED):
            self._run_checks_safely(request_id, "behaviour", "checkpoint")

    def _run_checks_safely(self, request_id: int, trigger: str, actor: str) -> None:
        """Evaluate checks where a failure to record them must not undo the caller's work
        (the request opened; its snapshots were refreshed): missing results show as pending."""
        try:
            self._evaluate(self.store.get(request_id), trigger, actor)
        except Exception:  # logged; the checks stay pending and block, and can be re-run
            log.exception("checks of request #%s (%s) could not be recorded", request_id, trigger)

    def _evaluate(self, request: PromoteRequest, trigger: str, actor: str, required_local: bool = False) -> None:
        """One round: local checks now, HTTP checks queued for the background thread
        (``required_local``: only the required local ones, right before apply)."""
        checked = self._checked(request)
        if not checked:
            return
        specs = [spec for spec, _ in checked]
        subjects: dict[int, checks.Subject] = {}
        results, queued = [], False
        for spec, part in checked:
            if not spec.local:
                if required_local:
                    continue
                queued_at = self.clock.now()
                results.append(
                    CheckResult(request.id, spec.name, spec.kind, spec.required, checks.PENDING, QUEUED, trigger, queued_at)
                )
                queued = True
            elif spec.required or not required_local:
                if id(part) not in subjects:  # one Subject per change: it reads MLflow lazily, once
                    subjects[id(part)] = self._subject(part)
                result, done_at = spec.evaluate(subjects[id(part)]), self.clock.now()
                results.append(
                    CheckResult(request.id, spec.name, spec.kind, spec.required, result.status, result.reason, trigger, done_at)
                )
        self.store.record_checks(request.id, results, keep=[s.name for s in specs], actor=actor)
        if queued and self.checks_queued is not None:
            self.checks_queued()

    def _subject(self, request: PromoteRequest) -> checks.Subject:
        """What the checks look at: MLflow in the request's workspace, and for a soak the timeline
        (its target noticed in MLflow first) and the workflow's clock."""
        workspace = request.workspace

        def lane_of(model: str, target: str) -> timeline.Lane | None:
            self._notice(model, target, workspace)
            gov = self.governance
            lanes = timeline.for_model(self.store, model, workspace, gov.governed_stages, gov.model_protected(model))
            return next((lane for lane in lanes if lane.target == target), None)

        return checks.Subject(request, self.registry_for(workspace), lane_of, self.clock.now())

    def _notice(self, model: str, target: str, workspace: str) -> None:
        """Record what holds a soak's alias or stage in MLflow now, if the log does not know it
        (an outside change): from then on it is known, never before. A protected model's latest
        version is known from the requests that created it; nothing is read for it."""
        kind, _, name = target.partition(":")
        registry = self.registry_for(workspace)
        try:
            if kind == "alias":
                holder = registry.alias_holder(model, name)
                self.store.record_outside_change(model, target, holder.version if holder else None, workspace=workspace)
            elif kind == "stage" and name in self.governance.governed_stages:
                held = sorted((v.version for v in registry.stage_holders(model, name)), key=int)
                newest = held[-1] if held else None
                self.store.record_outside_change(model, target, newest, workspace=workspace, holders=held)
        except Exception:  # noticing never breaks a check: the soak is judged on what the log knows
            log.warning("could not read %s of %s for a soak", target, model, exc_info=True)

    def run_soaks(self) -> list[int]:
        """The background task (registered when a rule has ``soak:``): judge again the soak of
        every open request that has one, record what changed, and move on a request whose soak
        now passes, as a check turning to pass does: open → approved and approved → applying
        are conditional transitions, so of every worker and replica running this at once,
        exactly one approves and applies it. Returns the ids this call approved."""
        approved: list[int] = []
        after = 0
        for _ in range(SOAK_PAGES):
            page = self.store.open_checks_of_kind(soak.SoakCheck.kind, after=after, limit=SOAK_PAGE)
            for stored in page:
                if self._soak_round(stored):
                    approved.append(stored.request_id)
            if len(page) < SOAK_PAGE:
                break
            after = page[-1].request_id
        return approved

    def _soak_round(self, stored: CheckResult) -> bool:
        request = self.store.get(stored.request_id)
        specs = self.check_specs(request)
        spec = next((s for s in specs if isinstance(s, checks.SoakCheck) and s.name == stored.name), None)
        if spec is None or request.state != OPEN:
            return False
        result = spec.evaluate(self._subject(request))
        if (result.status, result.reason) != (stored.status, stored.reason):
            judged = CheckResult(
                request.id, spec.name, spec.kind, spec.required, result.status, result.reason, "soak", self.clock.now()
            )
            self.store.record_checks(request.id, [judged], keep=[s.name for s in specs], actor="checkpoint")
        if result.status != checks.PASS or not self.status(request).ready:
            return False
        reason = f"approvals meet the policy; required checks pass (soak: {result.reason})"
        if not self.store.transition(request.id, (OPEN,), APPROVED, actor="checkpoint", event=EventKind.APPROVED, reason=reason):
            return False  # another worker or replica moved it first
        log.info("request #%s approved: its soak passed (%s)", request.id, result.reason)
        self.apply(request.id, actor="checkpoint")
        return True

    def _checks_before_apply(self, request: PromoteRequest, actor: str) -> list[CheckResult]:
        """Re-evaluate the required local checks; the required checks not passing, if any."""
        if not self.check_specs(request):
            return []
        self._evaluate(request, "apply", actor, required_local=True)
        return [c for c in self.check_results(request) if c.required and c.status != checks.PASS]

    def run_pending_checks(self, limit: int = 20) -> int:
        """The background task: evaluate queued HTTP checks, each claimed by one worker."""
        lease_before = self.clock.now() - timedelta(seconds=checks.HTTP_LEASE_SECONDS)
        done = 0
        for pending in self.store.due_checks("http", lease_before, limit):
            claimed = self.store.claim_check(pending.request_id, pending.name, lease_before)
            if claimed is None:
                continue  # another worker has it
            request = self.store.get(pending.request_id)
            found = next(
                ((s, part) for s, part in self._checked(request) if s.name == pending.name and isinstance(s, checks.HttpCheck)),
                None,
            )
            if found is None:
                result = checks.Result(checks.ERROR, "this HTTP check is no longer in the request's rule")
            else:  # a batch's check is sent the change it checks (its view), as a single request's
                result = checks.call_http(found[0], self.http_payload(found[1], found[0]))
            if self.store.settle_check(
                pending.request_id, pending.name, claimed, result.status, result.reason, actor="checkpoint"
            ):
                done += 1
                self._proceed(pending.request_id, "checkpoint")
        return done + self.run_behaviour_checks()

    def run_behaviour_checks(self, limit: int = 200) -> int:
        """The background work (each checks round, and as soon as diffs finished): judge the queued
        behaviour checks whose request's diff is finished, each claimed by one worker and recorded
        once; one whose diff is pending or running stays queued (a required one blocks approval)."""
        if self.behaviour_of is None:
            return 0
        lease_before = self.clock.now() - timedelta(seconds=checks.HTTP_LEASE_SECONDS)
        done = 0
        for pending in self.store.due_checks(checks.BehaviourCheck.kind, lease_before, limit):
            request = self.store.get(pending.request_id)
            spec = next((s for s in self.check_specs(request) if s.name == pending.name), None)
            if isinstance(spec, checks.BehaviourCheck):
                result = spec.judge(self.behaviour_of(request))
            else:
                result = checks.Result(checks.ERROR, "this behaviour check is no longer in the request's rule")
            if result.status == checks.PENDING:
                continue  # judged once the diff is finished
            claimed = self.store.claim_check(pending.request_id, pending.name, lease_before)
            if claimed is not None and self.store.settle_check(
                pending.request_id, pending.name, claimed, result.status, result.reason, actor="checkpoint"
            ):
                done += 1
                self._proceed(pending.request_id, "checkpoint")
        return done

    def http_payload(self, request: PromoteRequest, spec: checks.Check) -> dict:
        """What an HTTP check receives: the request as the API shows it, plus a diff summary."""
        status = self.status(request)
        rule = self.rule_of(request)
        base = (self.public_url or "").rstrip("/")
        subject = checks.Subject(request, self.registry_for(request.workspace))
        try:
            summary: dict | None = checks.diff_summary(subject)
            diff_error = None
        except Exception as exc:  # noqa: BLE001 - the summary is a courtesy; the check still runs
            summary, diff_error = None, f"{type(exc).__name__}: {exc}"
        return {
            "check": {"name": spec.name, "kind": spec.kind, "required": spec.required},
            "request": request_fields(request, status, rule, {"url": urls.request_page(base, request.id) if base else None}),
            "diff": summary,
            **({"diff_error": diff_error} if diff_error else {}),
        }

    def status(
        self, request: PromoteRequest, results: list[CheckResult] | None = None, standing: list[Latest] | None = None
    ) -> Status:
        """ "2 of 3 approvals", who is still awaited, the required checks not passing (``results``:
        the request's :meth:`check_results`, when the caller has them already), the required
        statuses not success (``standing``: its :meth:`statuses_standing`), and whose approval
        expired: only approvals younger than the rule's ``approvals_expire_after`` count (by the
        workflow's clock, whether or not the background work has recorded the expiry yet)."""
        rule = self.rule_of(request)
        at = self.clock.now()
        approvers = {r.reviewer for r in expiry.counting(request, rule, at)}
        status = batches.combine(
            [
                self.policy.status(
                    part.model_name, part.target, approvers, part.named_reviewers, part.workspace, rollback.verified(part)
                )
                for part in batches.parts(request)
            ]
        )
        lapsed = tuple(sorted({r.reviewer for r in request.reviews if expiry.expired(r, rule, at)} - approvers))
        results = self.check_results(request) if results is None else results
        blocked = tuple(c.name for c in results if c.required and c.status != checks.PASS)
        unmet: tuple[str, ...] = ()
        if rule.required_statuses:
            standing = self.statuses_standing(request) if standing is None else standing
            unmet = tuple(label for label, _ in self.statuses_unmet(request, standing))
        if blocked or lapsed or unmet:
            return replace(status, blocked_by=blocked, expired=lapsed, blocked_by_statuses=unmet)
        return status

    def statuses_standing(self, request: PromoteRequest, rows: list[PostedStatus] | None = None) -> list[Latest]:
        """The status standing for each context on ``request`` (``rows``: the status rows that may
        speak for it, when read already for a page): bound to its challenger's digest. A batch:
        per change (``Latest.part``), from its own rows and those on that change's version."""
        if rows is None:
            rows = self.store.statuses_of([request])[request.id]
        if not batches.is_batch(request):
            return statuses.latest(rows, digest_of(request.challenger), self.rule_of(request).required_statuses)
        own = batches.digest(request)
        out: list[Latest] = []
        for i, part in enumerate(batches.parts(request), 1):
            name, version = part.challenger.get("name"), part.challenger.get("version")
            mine = [
                row
                for row in rows
                if (row.request_id == request.id and row.digest == own)
                or (
                    row.request_id is None
                    and (row.workspace, row.model_name, row.version) == (part.workspace, name, str(version))
                    and row.digest == digest_of(part.challenger)
                )
            ]
            out += [replace(item, part=i) for item in statuses.standing(mine, self.rule_of(part).required_statuses)]
        return out

    def statuses_unmet(self, request: PromoteRequest, standing: list[Latest]) -> list[tuple[str, str]]:
        """The required statuses not ``success``, as (label, state): each change's rule asks for
        its own contexts, met only by what stands for that change."""
        if not batches.is_batch(request):
            return statuses.unmet([(standing, self.rule_of(request).required_statuses, None)])
        return statuses.unmet(
            [
                ([s for s in standing if s.part == i], self.rule_of(part).required_statuses, i)
                for i, part in enumerate(batches.parts(request), 1)
            ]
        )

    def statuses_of(self, requests: list[PromoteRequest]) -> dict[int, list[Latest]]:
        """:meth:`statuses_standing` for a page of requests."""
        rows = self.store.statuses_of(requests)
        return {r.id: self.statuses_standing(r, rows[r.id]) for r in requests}

    def refresh_checks(self, model: str, target: str, actor: str, skip: int | None = None, workspace: str = "") -> None:
        """The champion of ``target`` moved (an apply, an outside change): checks that compare
        against it are re-run on the target's other open requests (in the same MLflow workspace),
        and their diffs are read again."""
        try:
            items, _ = self.store.list_requests(state=OPEN, model=model, target=target, limit=50, workspace=workspace)
        except Exception:  # the apply that called this is recorded already
            log.exception("could not list the open requests for %s of %s to refresh their checks", target, model)
            return
        self._want_diff(item.id for item in items if item.id != skip)
        for item in items:
            if item.id != skip and self.check_specs(item):
                self._run_checks_safely(item.id, "refresh", actor)


def check_line(result: CheckResult) -> str:
    return f"required check {result.name} is {result.status}: {result.reason}"
