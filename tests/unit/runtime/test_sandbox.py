"""The sandbox's command line and the jail's spec (runtime/sandbox.py): the jail runs first in
the namespaces, as their PID 1, before the limits and the drop to ``nobody``; its spec names
every fresh scratch directory, the hidden paths and the job's directories. The real runs are
tests/integration/test_sandbox.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from checkpoint.runtime import sandbox

ROOT = sandbox.Isolation("namespaces", ("unshare", "--pid", "setpriv", "--reuid=65534", "--"), 65534, 65534)
USER = sandbox.Isolation("user-namespaces", ("unshare", "--user", "--pid"))


def test_the_spec_names_the_fresh_dirs_the_hidden_paths_and_the_job(tmp_path):
    env = (Path("/srv/cp/envs/abc"), tmp_path / "run" / "env")
    view = sandbox.View(
        readonly=(tmp_path / "run",), writable=(tmp_path / "run" / "home",), hidden=(Path("/srv/cp"),), binds=(env,)
    )
    spec = json.loads(view.spec(USER, sandbox.Limits(file_bytes=1 << 20), tmp_path / "run"))
    assert spec == {
        "cwd": str(tmp_path / "run"),
        "tmpfs": ["/run", "/tmp", "/var/tmp", "/dev/shm"],
        "hide": ["/srv/cp"],
        "readonly": [str(tmp_path / "run")],
        "writable": [str(tmp_path / "run" / "home")],
        "binds": [["/srv/cp/envs/abc", str(tmp_path / "run" / "env")]],  # a model's environment, read-only
        "own_user": True,  # not root: a second user namespace locks the mounts
        "tmpfs_bytes": 1 << 20,
    }
    assert json.loads(view.spec(ROOT, sandbox.Limits(), tmp_path))["own_user"] is False  # nobody holds no capability


def test_the_jail_comes_first_inside_the_namespaces_and_never_without_them(tmp_path, monkeypatch):
    seen: list[list[str]] = []

    class Stop(Exception):
        pass

    def popen(command, **kwargs):
        seen.append(command)
        raise Stop

    monkeypatch.setattr(sandbox.subprocess, "Popen", popen)
    for isolation in (ROOT, sandbox.Isolation("none", ())):
        try:
            sandbox.run(["model"], stdin=b"", cwd=tmp_path, env={}, limits=sandbox.Limits(), isolation=isolation)
        except Stop:
            pass
    jailed, bare = seen
    assert jailed[:2] == ["unshare", "--pid"] and jailed[2:5] == [sys.executable, "-I", "-S"]
    assert jailed[5] == str(sandbox.JAIL) and jailed[7:11] == ["nice", "-n", "10", "prlimit"]
    assert jailed.index("setpriv") > jailed.index("prlimit")
    assert jailed[-1] == "model" and bare[:4] == ["nice", "-n", "10", "prlimit"] and str(sandbox.JAIL) not in bare


def test_runs_yield_the_cpu_to_pages_unless_told_not_to():
    """A run is started at a lower CPU priority (nice), so that pages keep the cores while it runs."""
    assert sandbox.Limits(nice=19).prlimit()[:3] == ["nice", "-n", "19"]
    assert sandbox.Limits(nice=0).prlimit()[0] == "prlimit"
