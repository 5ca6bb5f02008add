"""Everything one Checkpoint process runs on, built once: the one place the parts are wired.

``Services.build(settings)`` opens the database (and checks its schema), and builds the
registry adapter, the store, the workflow, the proxy, the webhook sender, the reconciler and
the background thread's task list. It contacts nothing else: MLflow is first called when
:meth:`Services.start` runs the start-up work (``checkpoint serve`` at worker boot, or the
first call a plain WSGI server hands the app, see ``app.py``). :meth:`Services.close` undoes
it all. The Flask app keeps its one instance; :meth:`Services.of` finds it again.

No web framework here: the Flask side (CSRF, templates, the error renderer) lives in ``web/``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from checkpoint import identity
from checkpoint.clock import SYSTEM, Clock
from checkpoint.edge.proxy import Proxy, UpstreamError
from checkpoint.events.audit import HEAD, Keyring
from checkpoint.events.notifications import MailSender, Recipients, Smtp
from checkpoint.events.webhooks import Sender, Webhooks
from checkpoint.registry import Registry
from checkpoint.review import checking, expiry, schedule
from checkpoint.review.behaviour.diffs import INTERVAL as BEHAVIOUR_INTERVAL
from checkpoint.review.behaviour.diffs import BehaviourDiffs
from checkpoint.review.behaviour.runner import Runner
from checkpoint.review.checks import CHECKS_INTERVAL
from checkpoint.review.diff_snapshots import INTERVAL as DIFF_INTERVAL
from checkpoint.review.diff_snapshots import DiffSnapshots
from checkpoint.review.policy import Policy
from checkpoint.review.reconcile import Reconciler
from checkpoint.review.workflow import Workflow
from checkpoint.runtime import metrics, sandbox
from checkpoint.runtime.background import Background
from checkpoint.runtime.envs import Envs, find_uv
from checkpoint.settings import Settings
from checkpoint.storage import db
from checkpoint.storage.store import Store
from checkpoint.tokens import OwnerLookup, TokenService

log = logging.getLogger("checkpoint.evaluator")  # the name operators filter the JSON logs on

_KEY = "checkpoint"  # the one entry in ``app.extensions``


@dataclass
class Services:
    """The process's parts. Build with :meth:`build`, find with :meth:`of`, end with :meth:`close`."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker
    registry: Registry
    auth: identity.Authenticator
    policy: Policy
    store: Store
    workflow: Workflow
    webhooks: Webhooks
    sender: Sender | None
    reconciler: Reconciler
    proxy: Proxy
    background: Background
    tokens: TokenService
    clock: Clock = SYSTEM
    snapshots: DiffSnapshots | None = None  # the request pages' diffs (review/diff_snapshots.py)
    mailer: MailSender | None = None  # email to people (events/notifications), when SMTP is configured
    behaviours: BehaviourDiffs | None = None  # the behavioural diffs (review/behaviour/)
    _started: bool = field(default=False, repr=False)
    _closed: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _metrics: Any = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        render_upstream_error: Callable[[dict, UpstreamError], tuple[str, bytes]] | None = None,
        clock: Clock | None = None,
    ) -> Services:
        """Wire every part for ``settings`` (secret and audit key resolved already).

        ``clock`` is the one clock every part reads the time from (``checkpoint.clock``): the
        system's unless a test passes one it moves.

        Refuses a database whose schema is not current (``db.check_current``), as before any
        worker serves. Reads and writes only the database; nothing here calls MLflow.
        """
        engine = db.make_engine(settings.database_url)
        try:
            return cls._wire(settings, engine, render_upstream_error, clock or SYSTEM)
        except BaseException:
            engine.dispose()
            raise

    @classmethod
    def _wire(cls, settings: Settings, engine: Engine, render_upstream_error, clock: Clock) -> Services:
        db.check_current(engine)
        settings = settings.with_policy()  # read once: a no-op when the master (or create_app) read it
        assert settings.policy is not None  # with_policy() read it
        sessions = sessionmaker(engine, expire_on_commit=False)
        registry = Registry(
            settings.registry_url,
            username=settings.registry_username,
            password=settings.registry_password,
            token=settings.registry_token,
            timeout=min(settings.upstream_read_timeout, 60.0),
        )
        auth = identity.from_settings(settings)
        right = None
        if auth.mode == "mlflow":
            # MANAGE is asked in the request's MLflow workspace (grants there are per workspace).
            right = lambda user, model, workspace="": registry.in_workspace(workspace).can_manage(user.name, model)  # noqa: E731
        background = Background()
        # Webhooks: each event's deliveries are queued in its transaction; the commit wakes the sender.
        webhooks = settings.policy.webhooks
        keys = Keyring.of(settings.audit_key, *settings.audit_old_keys)
        policy, protection = settings.policy.rules, settings.policy.protection
        # Email: each event's rows are queued in its transaction too, for the people it concerns.
        smtp = Smtp.from_settings(settings)
        may_read = None
        if auth.mode == "mlflow":  # nobody hears of a model MLflow does not let them read
            may_read = lambda name, model, workspace: registry.in_workspace(workspace).may_user_read(name, model)  # noqa: E731
        recipients = Recipients(policy, settings.policy.people, may_read) if smtp is not None else None
        store = Store(
            sessions,
            subscribers=webhooks.subscribers,
            on_commit=background.wake,
            keys=keys,
            clock=clock,
            recipients=recipients,
        )
        store.seal_unkeyed()  # events from before the key get a keyed successor (audit.py)
        workflow = Workflow(
            store,
            registry,
            protection,
            policy,
            review_right=right,
            checks_queued=background.wake,
            public_url=settings.public_url,
            digest_max_bytes=settings.digest_max_bytes,
            clock=clock,
        )
        # The request pages' diffs, read off the page's path (review/diff_snapshots.py).
        snapshots = DiffSnapshots(store, workflow.registry_for, clock, wake=background.wake)
        background.every(DIFF_INTERVAL, "diff-snapshots", snapshots.run)
        behaviours = cls._behaviours(settings, store, workflow, clock, background)

        def wanted(request_ids: Iterable[int]) -> None:  # at opening and whenever a side moves
            request_ids = list(request_ids)
            snapshots.want(request_ids)
            behaviours.want(request_ids)

        workflow.diff_wanted = wanted
        if policy.http_checks:  # evaluated off the request path; queuing one wakes the thread
            background.every(CHECKS_INTERVAL, "checks", workflow.run_pending_checks)
        if policy.soaking:  # a soak that passed moves its request on by itself (review/checking.py)
            background.every(checking.SOAK_INTERVAL, "soak", workflow.run_soaks)
        # Applies a freeze or an apply_at held back, once their time comes (review/schedule.py).
        background.every(schedule.INTERVAL, "release", schedule.Release(workflow, clock).run)
        if policy.expiring:  # records each approval that grew too old, once (review/expiry.py)
            background.every(expiry.INTERVAL, "approval-expiry", expiry.Expiry(store, policy, clock).run)
        if webhooks.subscribers(HEAD):  # a signed copy of the log's head, kept by the receivers
            every = settings.audit_head_interval
            background.every(every, "audit-head", lambda: store.publish_head(every))
        sender = None
        if webhooks:
            sender = Sender(store, webhooks, settings.public_url, clock)
            background.every(sender.interval, "webhooks", sender.run)
        mailer = None
        if smtp is not None:
            mailer = MailSender(store, smtp, settings.public_url, clock)
            background.every(mailer.interval, "email", mailer.run)
        # Applies a crash interrupted: settled at start-up (start()), then a few times per lease.
        reconciler = Reconciler.for_settings(workflow.store, registry, settings, clock)
        background.every(reconciler.interval, "reconcile", reconciler.run)
        proxy = Proxy(
            settings.registry_url,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            pool_size=settings.upstream_pool_size,
            chunk_size=settings.chunk_size,
            public_url=settings.public_url,
            allowed_origins=settings.cors_allowed_origins,
            render_error=render_upstream_error,
            on_upstream=metrics.observe_upstream,
            zero_copy=settings.zero_copy,
            on_body=metrics.count_body,
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            registry=registry,
            auth=auth,
            policy=policy,
            store=store,
            workflow=workflow,
            webhooks=webhooks,
            sender=sender,
            reconciler=reconciler,
            proxy=proxy,
            background=background,
            tokens=TokenService(
                store,
                clock,
                OwnerLookup(settings.admins, registry.user_record if auth.mode == "mlflow" else None),
                settings.token_elevated_users,
                settings.token_max_days,
            ),
            clock=clock,
            snapshots=snapshots,
            mailer=mailer,
            behaviours=behaviours,
        )

    @staticmethod
    def _envs(settings: Settings) -> Envs | None:
        """Where models' own environments are built (``CHECKPOINT_EVALUATOR_ENV=uv``), else None."""
        uv = find_uv() if settings.evaluator_env == "uv" else None
        if uv is None:
            return None
        root = settings.data_dir / "envs"
        # uv fetches and unpacks wheels: far more memory and file size than a model's run needs.
        limits = sandbox.Limits(timeout=settings.evaluator_env_timeout, memory_mb=16384, file_bytes=4 << 30)
        return Envs(root, uv, settings.evaluator_env_cache or root / "uv-cache", limits)

    @staticmethod
    def _behaviours(settings: Settings, store: Store, workflow: Workflow, clock: Clock, background: Background) -> BehaviourDiffs:
        """The behavioural diffs: models run isolated (runtime/sandbox.py) by the background
        thread, one at a time per machine (a lock file in the data directory)."""
        runner = None
        if settings.evaluator != "off":
            limits = sandbox.Limits(
                timeout=settings.evaluator_timeout, memory_mb=settings.evaluator_memory_mb, nice=settings.evaluator_nice
            )
            runner = Runner(sandbox.detect(), limits, settings.private_paths(), Services._envs(settings))
        builds = 2 * settings.evaluator_env_timeout if settings.evaluator_env == "uv" else 0  # each side's environment
        lease = timedelta(seconds=3 * settings.evaluator_timeout + 600 + builds)  # two runs and the downloads
        lock = settings.data_dir / "evaluator.lock"
        diffs = BehaviourDiffs(
            store,
            workflow.registry_for,
            clock,
            runner,
            settings.evaluator,
            lock,
            lease,
            background.wake,
            evaluations_for=lambda item: workflow.policy.rule_for(item.model_name, item.target, item.workspace).evaluation,
            finished=workflow.run_behaviour_checks,
            checks_again=workflow.check_again,
        )
        workflow.behaviour_of = diffs.for_request
        if runner is not None:
            background.every(BEHAVIOUR_INTERVAL, "behaviour", diffs.run, lane="evaluator")  # minutes: not before deliveries
        return diffs

    # -- finding them again --------------------------------------------------------------

    def attach(self, app: Any) -> None:
        """Keep these services on a WSGI app (Flask's ``app.extensions``) for :meth:`of`."""
        app.extensions[_KEY] = self

    @classmethod
    def of(cls, app: Any) -> Services:
        """The services an app was built with (``create_app`` attaches them)."""
        found = getattr(app, "extensions", {}).get(_KEY)
        if not isinstance(found, cls):
            raise LookupError(f"{app!r} was not built by checkpoint.create_app")
        return found

    # -- life cycle ----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    def start(self, *, settle_first: bool = False) -> None:
        """The process's start-up work, once: settle the applies a crash interrupted, then run
        the background thread (when ``CHECKPOINT_BACKGROUND`` is on; its first round runs every
        task, the reconciler included). ``settle_first`` settles them before returning, as a
        worker does at boot; otherwise the thread's first round does, off the caller's path.
        With the thread off, they are settled here, once."""
        if self._started:
            return
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        runner = self.behaviours.runner if self.behaviours is not None else None
        if runner is not None:  # said at every start: which Python the models run with
            envs = f"its own environment built by uv under {runner.envs.root}" if runner.envs else "Checkpoint's own Python"
            log.info("behavioural diffs: each model runs with %s (CHECKPOINT_EVALUATOR_ENV)", envs)
        if runner is not None and not runner.isolation.isolated:  # said at every start, as the docs say
            refused = "refused" if self.settings.evaluator == "isolated" else "run WITHOUT isolation"
            log.warning("behavioural diffs: models are %s here: %s", refused, runner.isolation.note)
        if settle_first or not self.settings.background:
            self.reconciler.run_safely()
        if self.settings.background:
            self.background.start()

    def close(self) -> None:
        """Stop the background thread, close MLflow connections and the database's. Idempotent."""
        with self._lock:
            self._closed = True
        self.background.stop()
        if self.behaviours is not None and self.behaviours.runner is not None:
            sandbox.stop_all()  # a model run under way must not outlive the app
        self.proxy.pool.close()
        self.registry.http.clear()
        self.engine.dispose()

    def metrics_registry(self) -> Any:
        """What a scrape of ``/checkpoint/metrics`` reads, built on the first scrape."""
        if self._metrics is None:
            self._metrics = metrics.registry(self.store)
        return self._metrics


def services(app: Any) -> Services:
    """The services of ``app`` (a shorthand for :meth:`Services.of`, for tests and tools)."""
    return Services.of(app)
