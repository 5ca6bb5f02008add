"""Attacks on the sandbox that runs model authors' code (runtime/sandbox.py, runtime/jail.py),
with real namespaces, in both modes (as ``nobody`` when Checkpoint is root, and in a user
namespace as Checkpoint's own user): what a run can see and keep of the filesystem, whether it
can undo its mounts, and whether a process it hides in its own session survives the deadline.
The effects are read from the host's filesystem and ``/proc`` directly."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkpoint.runtime import sandbox
from tests.support.waiting import wait_until

USER_NAMESPACES = sandbox.Isolation("user-namespaces", ("unshare", "--user", "--map-root-user", *sandbox._NAMESPACES))


@pytest.fixture(params=["detected", "user-namespaces"])
def isolation(request) -> sandbox.Isolation:
    chosen = sandbox.detect() if request.param == "detected" else USER_NAMESPACES
    if not chosen.isolated:
        pytest.fail(f"these tests need namespaces (root or user namespaces): {chosen.note}")
    return chosen


@pytest.fixture
def private() -> Iterator[Path]:
    """Checkpoint's private directory, outside every scratch directory a run gets anew (so only
    hiding it keeps it from the run), readable by anyone: its mode alone protects nothing."""
    place = Path(tempfile.mkdtemp(prefix="checkpoint-private-", dir="/var/lib"))
    place.chmod(0o755)
    (place / "secret_key").write_text("hunter2-not-for-models")
    (place / "secret_key").chmod(0o644)
    yield place
    shutil.rmtree(place)


def run(
    isolation: sandbox.Isolation,
    script: str,
    hidden: tuple[Path, ...] = (),
    timeout: float = 30,
    binds: tuple[tuple[Path, str], ...] = (),
) -> tuple[sandbox.Outcome, Path]:
    """Run ``script`` as a model would be run: its job directory read-only, its home writable,
    each ``binds`` source shown read-only at that name in the job directory. Returns the outcome
    and the home (which the caller may read after the run)."""
    root = Path(tempfile.mkdtemp(prefix="checkpoint-run-"))
    root.chmod(0o711)
    place, home = root / "run", root / "run" / "home"
    home.mkdir(parents=True)
    place.chmod(0o700)
    if isolation.uid is not None:
        for path in (place, home):
            os.chown(path, isolation.uid, isolation.gid or -1)
    for _, name in binds:
        (place / name).mkdir()
    outcome = sandbox.run(
        [sys.executable, "-I", "-c", textwrap.dedent(script)],
        stdin=b"",
        cwd=place,
        env=sandbox.scrubbed_env(home),
        limits=sandbox.Limits(timeout=timeout),
        isolation=isolation,
        view=sandbox.View(
            readonly=(place,), writable=(home,), hidden=hidden, binds=tuple((source, place / name) for source, name in binds)
        ),
    )
    return outcome, home


def report(outcome: sandbox.Outcome) -> dict:
    assert outcome.ok, (outcome.problem, outcome.returncode, outcome.stderr_tail)
    return json.loads(outcome.output)


# The start of each script below (indented as their bodies are, for textwrap.dedent).
TRY = """
    import ctypes, json, os, subprocess, sys
    found = {}
    def attempt(label, action):
        try:
            found[label] = action()
        except OSError as exc:
            found[label] = type(exc).__name__
"""


def test_a_run_sees_no_private_path_and_keeps_nothing_for_the_next(isolation, private):
    marker = uuid.uuid4().hex
    spy = (
        TRY
        + f"""
    attempt("secret", lambda: open({str(private / "secret_key")!r}).read())
    attempt("listing", lambda: os.listdir({str(private)!r}))
    attempt("parent", lambda: open("/proc/{os.getpid()}/environ", "rb").read(10).decode())
    attempt("earlier", lambda: open("/tmp/{marker}").read())
    for scratch in ("/tmp", "/var/tmp", "/dev/shm", "/run"):
        attempt("plant " + scratch, lambda: open(scratch + "/{marker}", "w").write("left"))
    attempt("job dir", lambda: open("planted", "w").write("left"))
    attempt("home", lambda: open(os.environ["HOME"] + "/notes", "w").write("kept"))
    found["run"] = os.listdir("/run")
    print(json.dumps(found))
    """
    )
    spy = textwrap.dedent(spy)
    first, home = run(isolation, spy, hidden=(private,))
    seen = report(first)
    assert seen["secret"] == "FileNotFoundError" and seen["listing"] == []  # covered, not just unreadable
    assert seen["parent"] == "FileNotFoundError"  # another PID namespace
    assert seen["job dir"] == "OSError"  # read-only file system
    assert seen["home"] == 4 and (home / "notes").read_text() == "kept"  # its scratch home is its one output
    assert all(seen[f"plant {p}"] == 4 for p in ("/tmp", "/var/tmp", "/dev/shm", "/run")) and seen["run"] == [marker]
    # Nothing of it reached the host's scratch directories, nor the job directory ...
    assert not any(Path(p, marker).exists() for p in ("/tmp", "/var/tmp", "/dev/shm", "/run"))
    assert not (home.parent / "planted").exists()
    # ... nor the next run.
    assert report(run(isolation, spy, hidden=(private,))[0])["earlier"] == "FileNotFoundError"
    # The control: the same spy without the private directory hidden reads it.
    assert report(run(isolation, spy)[0])["listing"] == ["secret_key"]


def test_a_run_cannot_undo_its_mounts(isolation, private):
    undo = (
        TRY
        + f"""
    libc = ctypes.CDLL(None, use_errno=True)
    def umount(path):
        if libc.umount2(path.encode(), 2) != 0:  # MNT_DETACH
            raise OSError(ctypes.get_errno(), path)
        return "unmounted"
    def remount_rw(path):
        if libc.mount(None, path.encode(), None, 4096 | 32, None) != 0:  # MS_BIND | MS_REMOUNT
            raise OSError(ctypes.get_errno(), path)
        return "remounted"
    for path in ({str(private)!r}, "/tmp", os.getcwd()):
        attempt("umount " + path, lambda: umount(path))
    attempt("remount", lambda: remount_rw(os.getcwd()))
    attempt("secret", lambda: open({str(private / "secret_key")!r}).read())
    attempt("job dir", lambda: open("planted", "w").write("left"))
    if len(sys.argv) < 2:  # and once more as root of a user namespace of its own
        command = ["unshare", "-Urm", "python3", "-I", "-c", SOURCE, "inner"]  # the system Python: any will do
        again = subprocess.run(command, capture_output=True, text=True)
        found["inner"] = json.loads(again.stdout) if again.returncode == 0 else again.stderr
    print(json.dumps(found))
    """
    )
    undo = textwrap.dedent(undo)
    undo = f"SOURCE = {undo!r}\n{undo}"
    seen = report(run(isolation, undo, hidden=(private,))[0])
    for found in (seen, seen["inner"]):
        assert isinstance(found, dict), found
        assert not any(v in ("unmounted", "remounted") for v in found.values()), found
        assert found["secret"] == "FileNotFoundError" and found["job dir"] == "OSError", found
    assert not (private.parent / "planted").exists()


def test_a_bound_environment_is_read_only_and_its_neighbours_stay_hidden(isolation, private):
    """A model's own environment (runtime/envs.py) lies in the hidden data directory beside the
    others; the run sees its own, read-only, at ``env`` in its job directory, and nothing else."""
    envs = private / "envs"
    for name in ("mine", "other"):
        (envs / name).mkdir(parents=True)
        (envs / name / "lib.py").write_text(name)
    envs.chmod(0o755)
    spy = (
        TRY
        + f"""
    libc = ctypes.CDLL(None, use_errno=True)
    def remount_rw(path):
        if libc.mount(None, path.encode(), None, 4096 | 32, None) != 0:  # MS_BIND | MS_REMOUNT
            raise OSError(ctypes.get_errno(), path)
        return "remounted"
    attempt("read", lambda: open("env/lib.py").read())
    attempt("write", lambda: open("env/lib.py", "a").write("planted"))
    attempt("add", lambda: open("env/planted.py", "w").write("planted"))
    attempt("remount", lambda: remount_rw(os.path.abspath("env")))
    attempt("other", lambda: open({str(envs / "other" / "lib.py")!r}).read())
    attempt("listing", lambda: os.listdir({str(private)!r}))
    print(json.dumps(found))
    """
    )
    seen = report(run(isolation, textwrap.dedent(spy), hidden=(private,), binds=((envs / "mine", "env"),))[0])
    assert seen["read"] == "mine" and seen["listing"] == [] and seen["other"] == "FileNotFoundError", seen
    assert seen["write"] in ("OSError", "PermissionError") and seen["add"] in ("OSError", "PermissionError"), seen
    assert seen["remount"] != "remounted", seen
    assert (envs / "mine" / "lib.py").read_text() == "mine" and not (envs / "mine" / "planted.py").exists()


def test_a_process_hidden_in_its_own_session_dies_at_the_deadline(isolation):
    """The model's own process leaves the process group (``setsid``), forks, and both write a
    heartbeat into the run's home, a file the host can watch; the run then hangs."""
    beat = (
        TRY
        + """
    import time
    os.setsid()
    os.fork()
    path = os.path.join(os.environ["HOME"], "beat-%d" % os.getpid())
    while True:
        with open(path, "a") as out:
            out.write(".")
        time.sleep(0.05)
    """
    )
    marker = uuid.uuid4().hex
    outcome, home = run(isolation, f"# {marker}\n" + textwrap.dedent(beat), timeout=3)
    assert outcome.problem == "timed out after 3 s"
    beats = sorted(home.glob("beat-*"))
    assert len(beats) == 2  # both processes were beating before the deadline
    wait_until(lambda: not _alive(marker), "no process of the run left", timeout=5)
    settled = [p.stat().st_size for p in beats]
    assert not _alive(marker) and [p.stat().st_size for p in beats] == settled


def _alive(marker: str) -> list[int]:
    """The processes (the host's view) whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
