"""The first program of every isolated run (``runtime/sandbox.py`` starts it inside the run's
new namespaces, as PID 1 of its PID namespace, before the limits and the drop to ``nobody``).

It imports nothing of Checkpoint and runs no code of a model's author. It gives the run its own
view of the filesystem, then starts the run and waits for it:

* a fresh, empty tmpfs over ``/run``, ``/tmp``, ``/var/tmp`` and ``/dev/shm`` (nothing of
  Checkpoint's sockets or scratch files is there, and nothing a run leaves outlives it);
* every private path of Checkpoint's settings (``Settings.private_paths``) covered: a
  directory by an empty read-only tmpfs, a file by ``/dev/null``;
* the run's job directory bound read-only in place, its scratch home bound writable;
* each ``binds`` source (opened before anything covered it, so it may lie under a hidden path)
  bound read-only onto its target, a directory inside the job directory.

A run that could unmount these would see what they cover. As ``nobody`` (root mode) it has no
capability to; where Checkpoint is not root the run would be root of the namespace, so it is
first moved into a second user namespace: the mounts it inherits there are locked together and
cannot be unmounted or remounted writable. PID 1 never runs the model: the model cannot leave the
PID namespace, and when the parent kills this process (its parent-death signal, or directly)
the kernel kills everything in the namespace with it.

Usage: ``python -I -S jail.py <spec JSON> <command...>``; the spec is ``{"tmpfs": [...],
"hide": [...], "readonly": [...], "writable": [...], "binds": [[source, target], ...], "cwd": dir,
"own_user": bool, "tmpfs_bytes": n}``.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
PR_SET_DUMPABLE = 4
SETUP_FAILED = 125  # the exit status when the view could not be made (the run never started)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    encoded = [v.encode() if v else None for v in (source, target, fstype)]
    if _libc.mount(*encoded, flags, data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def kept_flags(path: str) -> int:
    """The flags of the mount ``path`` is on that a bind of it must keep (a user namespace may
    not clear flags it inherited locked)."""
    have = os.statvfs(path).f_flag
    flags = have & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for st, ms in ((1024, MS_NOATIME), (2048, MS_NODIRATIME), (4096, MS_RELATIME)):
        if have & st:
            flags |= ms
    return flags


def bind(fd: int, target: str, read_only: bool) -> None:
    """Bind the directory open as ``fd`` (opened before anything covered it) at ``target``."""
    os.makedirs(target, exist_ok=True)
    mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
    flags = kept_flags(target) | MS_NOSUID | MS_NODEV | (MS_RDONLY if read_only else 0)
    mount(None, target, None, MS_BIND | MS_REMOUNT | flags)


def make_view(spec: dict) -> None:
    places = [(path, path, True) for path in spec["readonly"]] + [(path, path, False) for path in spec["writable"]]
    places += [(source, target, True) for source, target in spec.get("binds", [])]  # last: onto the job directory
    held = [(os.open(source, os.O_PATH | os.O_DIRECTORY), target, ro) for source, target, ro in places]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for path in spec["tmpfs"]:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={int(spec['tmpfs_bytes'])}")
    for path in spec["hide"]:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=4k")
        elif os.path.exists(path):
            mount("/dev/null", path, None, MS_BIND)
            mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags(path))
    for fd, path, read_only in held:
        bind(fd, path, read_only)
        os.close(fd)
    os.chdir(spec["cwd"])  # the working directory as the run sees it, not the one now covered


def own_user() -> None:
    """Move into a second user namespace (mapping our root to itself): every mount inherited
    from the first is now locked."""
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as out:
            out.write(text)


def main() -> int:
    spec, command = json.loads(sys.argv[1]), sys.argv[2:]
    try:
        make_view(spec)
    except OSError as exc:
        print(f"the run's filesystem view could not be made: {exc}", file=sys.stderr)
        return SETUP_FAILED
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the run may not ptrace its init
    child = os.fork()
    if child == 0:
        try:
            if spec["own_user"]:
                own_user()
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"the run could not be started: {exc}", file=sys.stderr)
        os._exit(SETUP_FAILED)
    while True:  # PID 1 reaps every orphan until the run itself ends
        pid, status = os.wait()
        if pid == child:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
