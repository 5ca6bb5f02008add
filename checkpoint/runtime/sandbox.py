"""Running code a model author controls, away from everything Checkpoint holds.

Loading a model runs its author's code (pickles, a custom pyfunc). A model registered by an
EDIT user must not be able to read Checkpoint's MLflow credentials, its database URL or its
secret key, nor reach MLflow to move an alias itself. So each run is a separate short-lived
process that gets:

* an environment built from nothing (a ``PATH``, a scratch ``HOME``; no ``CHECKPOINT_*``,
  no ``MLFLOW_*``, nothing inherited);
* on Linux, its own network namespace (no interface but a loopback that is down: MLflow and
  Checkpoint are unreachable), its own PID namespace with its own ``/proc`` (Checkpoint's
  processes and their ``environ`` are not visible), and, when Checkpoint runs as root, an
  unprivileged user (``nobody``), so that files only Checkpoint's user may read stay unread;
* its own mount namespace, set up by ``jail.py`` (its PID 1): fresh tmpfs over ``/run``,
  ``/tmp``, ``/var/tmp``, ``/dev/shm``, Checkpoint's private paths covered, the job directory
  read-only but for its scratch home, and mounts the run cannot undo;
* resource limits (``prlimit``): address space, CPU seconds, the size of a file it writes;
* a wall-clock deadline, after which its PID namespace is killed whole (its init, and with it
  every process in it, whatever session or group a process moved itself to);
* its answer read back as bytes, at most ``output_bytes`` of them (more is an error), and
  only the tail of what it prints on stderr.

Where namespaces are not available (not root and no user namespaces, or not Linux), the
isolation is ``none``: Checkpoint says so in its log at start and on every result, and
``CHECKPOINT_EVALUATOR=isolated`` (the default) refuses to run models at all there.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger("checkpoint.evaluator")  # the name operators filter the JSON logs on

UNPRIVILEGED = "nobody"  # the user a root Checkpoint runs models as
STDERR_TAIL = 8192  # bytes of a run's stderr kept (for the reason of a failure)
_NAMESPACES = ("--net", "--pid", "--fork", "--mount-proc", "--kill-child")
_running: set[subprocess.Popen] = set()  # this process's runs under way (ended by stop_all)
_running_lock = threading.Lock()


JAIL = Path(__file__).with_name("jail.py")
FRESH = ("/run", "/tmp", "/var/tmp", "/dev/shm")  # each run gets its own, empty


@dataclass(frozen=True)
class View:
    """What of the filesystem one run sees differently: its job directory (read-only), the
    directories in it that it may write, Checkpoint's private paths (hidden), and directories
    shown read-only at another place (``binds``: (source, an existing directory in the job
    directory); a model's own environment from a hidden cache, ``envs.py``)."""

    readonly: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    binds: tuple[tuple[Path, Path], ...] = ()

    def spec(self, isolation: Isolation, limits: Limits, cwd: Path) -> str:
        return json.dumps(
            {
                "cwd": str(cwd),
                "tmpfs": list(FRESH),
                "hide": [str(p) for p in self.hidden],
                "readonly": [str(p) for p in self.readonly],
                "writable": [str(p) for p in self.writable],
                "binds": [[str(source), str(target)] for source, target in self.binds],
                "own_user": isolation.mode == "user-namespaces",
                "tmpfs_bytes": limits.file_bytes,
            }
        )


@dataclass(frozen=True)
class Limits:
    """How much one run may take."""

    timeout: float = 120.0  # wall clock, seconds
    memory_mb: int = 2048  # address space
    output_bytes: int = 4 << 20  # its answer on stdout
    file_bytes: int = 256 << 20  # the largest file it may write
    # CPU priority (nice): a run competes for the cores with the web workers, whose pages must
    # not slow down while a diff runs (benchmarks/behaviour_bench.py); 0 = the same as them.
    nice: int = 10

    def prlimit(self) -> list[str]:
        cpu = max(1, int(self.timeout) + 1)
        return [
            *(["nice", "-n", str(self.nice)] if self.nice else []),
            "prlimit",
            f"--as={self.memory_mb * 1024 * 1024}",
            f"--cpu={cpu}",
            f"--fsize={self.file_bytes}",
            "--core=0",
            "--",
        ]


@dataclass(frozen=True)
class Isolation:
    """How runs are separated from Checkpoint here: ``namespaces`` (root: own network, PID and
    mount namespaces, run as ``nobody``), ``user-namespaces`` (not root: the same inside an
    unprivileged user namespace, as Checkpoint's own user), or ``none``."""

    mode: str
    prefix: tuple[str, ...]
    uid: int | None = None  # the user the run's scratch files must belong to
    gid: int | None = None
    note: str = ""

    @property
    def isolated(self) -> bool:
        return self.mode != "none"


@cache
def detect() -> Isolation:
    """The strongest isolation this machine offers, probed once per process."""
    if os.name != "posix" or not Path("/proc/self/ns/net").exists():
        return Isolation("none", (), note="not Linux: models run without network or process isolation")
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(UNPRIVILEGED)
        except KeyError:
            user = None
        if user is not None:
            drop = ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--no-new-privs", "--")
            as_nobody: tuple[str, ...] = ("unshare", *_NAMESPACES, *drop)
            if _works(as_nobody):
                return Isolation("namespaces", as_nobody, user.pw_uid, user.pw_gid)
    prefix = ("unshare", "--user", "--map-root-user", *_NAMESPACES)
    if _works(prefix):
        note = "runs as Checkpoint's own user (in a user namespace): keep secrets out of files that user can read"
        return Isolation("user-namespaces", prefix, note=note)
    return Isolation(
        "none",
        (),
        note="`unshare --net` is not permitted here (not root, and user namespaces are disabled): "
        "models would run with the network Checkpoint has",
    )


def _works(prefix: Sequence[str]) -> bool:
    """Whether ``prefix`` runs a program that sees no network interface but ``lo``."""
    probe = [*prefix, "cat", "/proc/net/dev"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=20, env={"PATH": "/usr/bin:/bin"}, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    if done.returncode != 0:
        return False
    interfaces = [line.split(":", 1)[0].strip() for line in done.stdout.decode(errors="replace").splitlines()[2:]]
    return interfaces == ["lo"]


@dataclass(frozen=True)
class Outcome:
    """What one run gave back: its exit status, its answer (bounded), its stderr's tail."""

    returncode: int | None
    output: bytes
    stderr_tail: str
    seconds: float
    problem: str = ""  # timed out / too much output: why the answer is not to be read

    @property
    def ok(self) -> bool:
        return not self.problem and self.returncode == 0


def scrubbed_env(home: Path) -> dict[str, str]:
    """The whole environment a run gets: nothing of Checkpoint's."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        # One thread each: the CPU limit and the machine's other work count on it.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
    }


def run(
    argv: Sequence[str],
    *,
    stdin: bytes,
    cwd: Path,
    env: Mapping[str, str],
    limits: Limits,
    isolation: Isolation,
    view: View | None = None,
) -> Outcome:
    """Run ``argv`` isolated and limited; never raises for what the program does. Isolated, it
    runs under ``jail.py`` with ``view`` (by default: only the fresh scratch directories)."""
    split = _split(isolation)
    jail: list[str] = []
    if isolation.isolated:
        jail = [sys.executable, "-I", "-S", str(JAIL), (view or View()).spec(isolation, limits, cwd)]
    command = [*isolation.prefix[:split], *jail, *limits.prlimit(), *isolation.prefix[split:], *argv]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,  # its own process group: the deadline kills all of it
        close_fds=True,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    with _running_lock:
        _running.add(process)
    try:
        return _supervise(process, stdin, limits, started)
    finally:
        with _running_lock:
            _running.discard(process)


def stop_all() -> None:
    """Kill the runs this process started that are still going (the process is closing)."""
    with _running_lock:
        running = list(_running)
    for process in running:
        _kill(process)


def _supervise(process: subprocess.Popen, stdin: bytes, limits: Limits, started: float) -> Outcome:
    """Feed the run its job, read its answer (bounded) and stderr's tail, enforce the deadline."""
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    try:
        process.stdin.write(stdin)
        process.stdin.close()
    except BrokenPipeError:
        pass
    output, tail, problem = bytearray(), bytearray(), ""
    deadline = started + limits.timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, "out")
        selector.register(process.stderr, selectors.EVENT_READ, "err")
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                problem = f"timed out after {limits.timeout:g} s"
                break
            for key, _ in selector.select(min(left, 1.0)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.data == "out":
                    output += chunk
                    if len(output) > limits.output_bytes:
                        problem = f"its output was over {limits.output_bytes:,} bytes"
                        break
                else:
                    tail = (tail + chunk)[-STDERR_TAIL:]
            if problem:
                break
    if problem:
        _kill(process)
    try:
        returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        problem = problem or f"timed out after {limits.timeout:g} s"
        _kill(process)
        returncode = process.wait()
    for stream in (process.stdout, process.stderr):
        stream.close()
    seconds = time.monotonic() - started
    return Outcome(returncode, bytes(output[: limits.output_bytes]), tail.decode("utf-8", "replace"), seconds, problem)


def _split(isolation: Isolation) -> int:
    """Where the limits go in the prefix: after ``unshare`` (root's limits must not bind
    ``unshare``), before ``setpriv`` drops to the unprivileged user."""
    prefix = isolation.prefix
    return prefix.index("setpriv") if "setpriv" in prefix else len(prefix)


def _kill(process: subprocess.Popen) -> None:
    """Kill the run's PID namespace (its init, ``unshare``'s child: the kernel then kills every
    process in it), then ``unshare`` and its process group (the run, where not isolated)."""
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    except OSError:
        children = []
    for pid in children:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
