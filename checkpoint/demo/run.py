"""`checkpoint demo`: a real MLflow server, seeded with example models, with Checkpoint in front.

The demo is the first thing a newcomer runs, so it uses nothing fake: a real ``mlflow server``
(SQLite store, served artifacts), real runs with metric histories, real scikit-learn models
with signatures, and ``checkpoint serve`` exactly as it is deployed. The example models are
built so that a review has something to find: a challenger that is better, one that silently
drops an input column, and one that is clearly worse.

This module supervises the two processes; the models are in ``data``, their training in
``training``, and filling the registry in ``seed``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from checkpoint.demo import story
from checkpoint.demo.data import (
    DEMO_MODEL_NAMES,
    FREEZE_MODEL,
    FREEZE_NAME,
    MODELS,
    ON_CALL,
    TOKEN_ELEVATED_USERS,
    DemoError,
    freeze_window,
    write_policy,
)
from checkpoint.demo.mailbox import Mailbox
from checkpoint.demo.mlflow_server import MlflowServer, wait_http
from checkpoint.demo.seed import seed

# Knobs that tune the Checkpoint process carry over from the caller's environment; anything that
# points at a real deployment (its database, public URL, secret) does not.
_PASSTHROUGH = frozenset(
    {"CHECKPOINT_WORKERS", "CHECKPOINT_THREADS", "CHECKPOINT_LOG_LEVEL", "CHECKPOINT_LOG_FORMAT", "CHECKPOINT_ACCESS_LOG"}
)


class _Stop(Exception):
    """SIGTERM arrived: unwind like Ctrl-C does."""


def _demo_webhook(env: dict[str, str], checkpoint_dir: Path, url: str) -> dict[str, str]:
    """With ``CHECKPOINT_DEMO_WEBHOOK=<url>``, every event is also sent, signed with
    ``CHECKPOINT_WEBHOOK_SECRET`` (default ``demo-secret``), to that receiver (scripts/webhook_receiver.py):
    the demo's policy file, if any, plus one ``webhooks`` entry."""
    target = os.environ.get("CHECKPOINT_DEMO_WEBHOOK", "").strip()
    if not target:
        return env
    import yaml

    base = env.get("CHECKPOINT_POLICY_FILE")
    policy = (yaml.safe_load(Path(base).read_text()) or {}) if base and Path(base).is_file() else {}
    policy["webhooks"] = [{"name": "demo-receiver", "url": target, "events": ["*"], "secret_env": "CHECKPOINT_WEBHOOK_SECRET"}]
    path = checkpoint_dir / "policy-with-webhook.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    secret = os.environ.get("CHECKPOINT_WEBHOOK_SECRET") or "demo-secret"
    print(f"checkpoint demo: webhook deliveries go to {target} (see {url}/checkpoint/deliveries)", flush=True)
    return {**env, "CHECKPOINT_POLICY_FILE": str(path), "CHECKPOINT_WEBHOOK_SECRET": secret}


def _demo_email(env: dict[str, str], mailbox: Mailbox, url: str) -> dict[str, str]:
    """Checkpoint's email goes to the demo's own mailbox (printed on this console); links point at
    ``url``, and the same page opened as localhost may still send writes."""
    localhost = url.replace("127.0.0.1", "localhost")
    return {
        **env,
        "CHECKPOINT_SMTP_HOST": "127.0.0.1",
        "CHECKPOINT_SMTP_PORT": str(mailbox.port),
        "CHECKPOINT_SMTP_SECURITY": "none",
        "CHECKPOINT_SMTP_FROM": "Checkpoint demo <checkpoint@example.com>",
        "CHECKPOINT_PUBLIC_URL": url,
        "CHECKPOINT_CORS_ALLOWED_ORIGINS": localhost,
    }


def _port_problem(port: int, option: str) -> str | None:
    """Why ``port`` cannot be used on 127.0.0.1, naming the option that changes it; None if free."""
    if not 0 < port < 65536:
        return f"{option} {port} is not a TCP port (1-65535)"
    with socket.socket() as sock:
        # As the servers do, so a port left in TIME_WAIT by a previous demo still counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on 127.0.0.1 is already in use; pick another with {option} <port>"
            return f"cannot use port {port} on 127.0.0.1 ({exc.strerror}); pick another with {option} <port>"
    return None


def _released(port: int, timeout: float = 15.0) -> bool:
    """Wait until nothing accepts connections on 127.0.0.1:``port``.

    Stopping a server's process group returns when its leader exits; a worker that holds the
    listening socket may take a moment longer, and "stopped" should mean the port is free.
    """
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _tail(path: Path, size: int = 3000) -> str:
    """The end of a log file, for an error message."""
    if not path.exists():
        return "(no log written)"
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode("utf-8", "replace")


def _stop_group(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop the process group we started (gunicorn and its workers) as Ctrl-C would, then SIGKILL.

    SIGINT is gunicorn's quick shutdown. Its graceful one (SIGTERM) waits for connections it
    still counts as open, up to the graceful timeout: measured with gunicorn 26's gthread, 60 s
    after one page view from a client process that was still running. Right for a deployment,
    wrong for a demo being closed.
    Once the leader has exited and been reaped its id may be reused, so a dead leader's group
    is left alone (gunicorn workers shut themselves down when their master goes).
    """
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"checkpoint demo: pid {process.pid} ignored Ctrl-C for {timeout:.0f} s; killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def _python_for_banner() -> str:
    """The interpreter to suggest: it has MLflow installed, unlike whatever `python` is on PATH."""
    relative = os.path.relpath(sys.executable)
    return relative if not relative.startswith("..") else sys.executable


def _banner(
    url: str, mlflow_url: str, data_dir: Path, summary: dict[str, Any], log: Path, mlflow_log: Path, freeze_until: datetime
) -> str:
    """What the user reads once everything is up: where to go and what to try."""
    python = _python_for_banner()
    fraud = summary["models"]["fraud-detector"]
    champion = fraud["aliases"].get("champion", "?")
    challenger = fraud["aliases"].get("challenger", "?")
    # Read back rather than assumed: on a re-run, earlier approvals may have moved things.
    seeded = "seeded just now" if summary["created"] else "found from an earlier run"
    specs = next(m for m in MODELS if m.name == "fraud-detector").versions
    breaking = next(number for number, spec in enumerate(specs, start=1) if spec.features)
    worse = next(number for number, spec in enumerate(specs, start=1) if spec.train_rows)
    move = (
        "from mlflow import MlflowClient; "
        f"MlflowClient().set_registered_model_alias('fraud-detector', 'champion', '{challenger}')"
    )
    load = "import mlflow; print(mlflow.sklearn.load_model('models:/fraud-detector@champion'))"
    told = summary.get("story")
    waiting = (
        f"Request #{told.frozen} ({FREEZE_MODEL} @champion -> v3) was approved during it: its page says it is\n"
        f"      waiting for the freeze to end, and it applies by itself soon after {freeze_until:%H:%M} UTC."
        if told
        else f"Open a request for {FREEZE_MODEL} @champion and approve it (as another user) before then: it waits."
    )
    rule = "=" * 78
    return f"""
{rule}
  Checkpoint demo is running. Open:

      {url}/

  That is MLflow's own UI with Checkpoint in front. Promote requests: {url}/checkpoint/requests
  MLflow itself (behind Checkpoint): {mlflow_url} (changes made there directly skip review).

  Example models ({seeded}): {", ".join(DEMO_MODEL_NAMES)}

  Things to try:
   1. Open the fraud-detector model: {url}/#/models/fraud-detector
      Version {champion} holds the `champion` alias, version {challenger} the `challenger` alias (the
      Aliases column: fraud-detector uses aliases only, as MLflow's model page shows them).
      Open version {challenger}, edit its aliases, add `champion` and save: Checkpoint opens a
      promote request for review instead of changing production. (Version {breaking} drops an input
      column, version {worse} is clearly worse on val_auc: try promoting those too. The request
      page's Checks show the policy's metric gate and signature check passing for {challenger}
      and failing for those.) Two people: pick "alice" at {url}/checkpoint/whoami
      in one browser to ask, "bob" in a private window to approve ("1 for you" on his panel).
   2. The champion's history: {url}/checkpoint/models/fraud-detector/timeline
      Click "Roll back to v{challenger}" on its row, then "Open rollback request" (v{challenger} held @champion
      through a reviewed request: the policy's rollback fast path). Approve it as another user
      (or as yourself): v{challenger} is the champion again, and the timeline shows the rollback.
   3. Freeze '{FREEZE_NAME}' holds {FREEZE_MODEL} @champion until {freeze_until:%H:%M} UTC ({url}/checkpoint/requests).
      {waiting}
   4. Do the same from code, through Checkpoint:
      MLFLOW_TRACKING_URI={url} {python} -c \\
        "{move}"
   5. Reads pass straight through:
      MLFLOW_TRACKING_URI={url} {python} -c \\
        "{load}"
   6. A pipeline, no browser (tokens, a status, a review from the terminal, then drift):
      bash scripts/demo-pipeline --url {url} --mlflow-url {mlflow_url}

  Data: {data_dir} (kept between runs; --reset starts over).
  Audit key: generated into {data_dir / "checkpoint" / "audit_key"}; the audit chain is only as
  safe as that directory (production sets CHECKPOINT_AUDIT_KEY; see docs/deploy.md).
  Logs: {log} and {mlflow_log}
  Press Ctrl-C to stop both servers.
{rule}
"""


def _supervise(children: dict[str, tuple[subprocess.Popen, Path]]) -> str:
    """Block until a child exits on its own, and say which, with the end of its log.

    Ctrl-C and SIGTERM end the wait too, as exceptions, for the caller's cleanup.
    """
    while True:
        for name, (process, log) in children.items():
            if process.poll() is not None:
                return f"checkpoint demo: {name} exited unexpectedly (code {process.returncode}). End of {log}:\n{_tail(log)}"
        time.sleep(0.5)


def run(port: int, mlflow_port: int, data_dir: str | os.PathLike, reset: bool = False) -> int:
    """Start MLflow, seed it, put Checkpoint in front, and keep both up until Ctrl-C or SIGTERM."""
    for problem in (
        _port_problem(port, "--port"),
        _port_problem(mlflow_port, "--mlflow-port"),
        "--port and --mlflow-port must differ" if port == mlflow_port else None,
    ):
        if problem:
            print(f"checkpoint demo: {problem}", file=sys.stderr, flush=True)
            return 2

    root = Path(data_dir).expanduser().resolve()
    mlflow_root, checkpoint_dir, checkpoint_log = root / "mlflow", root / "checkpoint", root / "checkpoint.log"
    if reset:
        # Only the demo's own files: the data directory may be shared with other things.
        for path in (mlflow_root, checkpoint_dir):
            shutil.rmtree(path, ignore_errors=True)
        checkpoint_log.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    # MLflow phones home by default; the demo only ever talks to loopback. A user's choice wins.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    if in_main_thread:
        # Explicitly, because a shell starting us in the background (`demo &`) hands us SIGINT
        # already ignored, and Python then never turns it into KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_stop)

    server = MlflowServer(mlflow_root, port=mlflow_port, workers=1)
    checkpoint: subprocess.Popen | None = None
    url = f"http://127.0.0.1:{port}"
    code = 1
    failure = ""  # printed last, after the shutdown lines, so it is what the user reads
    listening: list[tuple[str, int]] = []  # (option, port) of the servers that came up
    mailbox = Mailbox(root / "mail", lambda line: print(f"checkpoint demo: {line}", flush=True))
    try:
        print(f"checkpoint demo: starting MLflow on {server.url} (data in {mlflow_root}) ...", flush=True)
        server.start()
        listening.append(("--mlflow-port", mlflow_port))
        print("checkpoint demo: seeding example models ...", flush=True)
        summary = seed(server.url, progress=lambda message: print(f"checkpoint demo:   {message}", flush=True))
        note = "seeded" if summary["created"] else "already seeded, left as they were"
        print(f"checkpoint demo: example models {note} ({summary['seconds']} s)", flush=True)

        env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINT_") or k in _PASSTHROUGH}
        env.update(
            {
                "CHECKPOINT_REGISTRY_URL": server.url,
                "CHECKPOINT_DATA_DIR": str(checkpoint_dir),
                "CHECKPOINT_DATABASE_URL": f"sqlite:///{checkpoint_dir / 'checkpoint.db'}",
                "CHECKPOINT_ADMINS": ON_CALL,
                "CHECKPOINT_TOKEN_ELEVATED_USERS": ",".join(TOKEN_ELEVATED_USERS),
            }
        )
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        env["CHECKPOINT_POLICY_FILE"] = str(write_policy(checkpoint_dir, now))
        env = _demo_webhook(env, checkpoint_dir, url)
        if summary["created"]:
            print("checkpoint demo: writing a history through Checkpoint ...", flush=True)
            summary["story"] = story.play(env, now, lambda message: print(f"checkpoint demo:   {message}", flush=True))

        print(f"checkpoint demo: starting Checkpoint on {url} (its email: {root / 'mail'}, shown here) ...", flush=True)
        mailbox.start()
        with checkpoint_log.open("ab") as log:
            checkpoint = subprocess.Popen(
                [sys.executable, "-m", "checkpoint.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=_demo_email(env, mailbox, url),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(f"{url}/checkpoint/healthz", timeout=60, process=checkpoint, log=checkpoint_log)
        listening.append(("--port", port))
        banner = _banner(url, server.url, root, summary, checkpoint_log, server.log_path, freeze_window(now)[1])
        print(banner, flush=True)
        assert server.process is not None  # MlflowServer.start() started it
        failure = _supervise(
            {
                "checkpoint serve": (checkpoint, checkpoint_log),
                "mlflow server": (server.process, server.log_path),
            }
        )
    except (KeyboardInterrupt, _Stop):
        code = 0
    except (DemoError, RuntimeError, TimeoutError) as exc:
        # RuntimeError/TimeoutError: a server did not come up; the message carries its log's tail.
        failure = f"checkpoint demo: {exc}"
    finally:
        # A second Ctrl-C while stopping must not leave a server running without its parent.
        if in_main_thread:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\ncheckpoint demo: stopping ...", flush=True)
        if checkpoint is not None:
            _stop_group(checkpoint)
        server.stop()
        mailbox.stop()
        lingering = [f"{option} {number}" for option, number in listening if not _released(number)]
        if lingering:
            print(f"checkpoint demo: still listening after stop: {', '.join(lingering)}", file=sys.stderr, flush=True)
        print("checkpoint demo: stopped", flush=True)
        if in_main_thread:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if failure:
        print(failure, file=sys.stderr, flush=True)
    return code


def _raise_stop(_signum: int, _frame: object) -> None:
    """SIGTERM handler: leave the wait loop through the same cleanup as Ctrl-C."""
    raise _Stop()
