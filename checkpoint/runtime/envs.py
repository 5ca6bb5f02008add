"""A model's own Python environment, built from its requirements with ``uv`` (opt-in:
``CHECKPOINT_EVALUATOR_ENV=uv``), cached, and run read-only inside the model's isolated run.

Building needs the package index, so it cannot happen in the run's network-less namespace; it
therefore runs nothing the model's author controls:

* every line of ``requirements.txt`` must be a plain requirement (``name[extras] specifiers;
  marker``, read by ``packaging``): no options (``-e``, ``-r``, ``--index-url``...), no URLs,
  paths or VCS references; one that is not refuses the whole build before anything is fetched;
* wheels only (``uv pip install --no-build``): no ``setup.py`` or build backend ever runs;
* ``uv`` gets a scrubbed environment (no ``CHECKPOINT_*``, no ``MLFLOW_*``), no configuration
  files, no Python downloads, a wall-clock deadline and resource limits (``sandbox.run``).

MLflow's own ``mlflow.utils.virtualenv`` is not used for the build: it passes the whole process
environment to its tools, installs ``requirements.txt`` as written (options included) and builds
source distributions. Its ``_PythonEnv`` still reads ``python_env.yaml``.

Environments live under ``<data dir>/envs/<key>``, the key a hash of the Python minor version and
the requirements (:func:`env_key`). A build goes into a temporary directory renamed into place
once complete, under a lock file, so two workers never build into the same directory and a
half-built environment is never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from checkpoint.runtime import sandbox

log = logging.getLogger("checkpoint.evaluator")
KEY_VERSION = "1"  # bumped when what goes into an environment changes
SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin"  # where interpreters are looked for, besides Checkpoint's own
MAX_LINES = 500
# Operator settings for reaching the package index that uv may see (none of them Checkpoint's).
PASSED_THROUGH = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE", "UV_DEFAULT_INDEX", "UV_INDEX_URL")


class EnvBuildError(Exception):
    """The model's environment could not be had; the message is the reason a reviewer sees
    (after "environment build failed: ")."""


def allowed_requirements(text: str) -> list[str]:
    """The requirement lines of a ``requirements.txt``, each as ``packaging`` reads it back;
    :class:`EnvBuildError` naming the first line that is not a plain requirement."""
    out: list[str] = []
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise EnvBuildError(f"requirements.txt has {len(lines)} lines, over {MAX_LINES}")
    for number, raw in enumerate(lines, 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        refused = f"requirement line {number} not allowed: {raw.strip()[:200]!r}"
        if line.startswith("-") or line.endswith("\\") or "://" in line or "@" in line.split(";", 1)[0]:
            raise EnvBuildError(f"{refused} (only plain name[extras] version; marker requirements are installed)")
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise EnvBuildError(f"{refused} ({exc})") from None
        if requirement.url:
            raise EnvBuildError(f"{refused} (no URLs, paths or VCS references)")
        out.append(str(requirement))
    return out


def with_evaluator_needs(requirements: list[str]) -> list[str]:
    """The requirements plus what the evaluator itself imports in the environment: MLflow (the
    version Checkpoint runs, unless the model names one) and pyarrow (the datasets' parquet)."""
    names = {canonicalize_name(Requirement(r).name) for r in requirements}
    extra = []
    if not names & {"mlflow", "mlflow-skinny"}:
        extra.append(f"mlflow=={metadata.version('mlflow')}")
    if "pyarrow" not in names:
        extra.append("pyarrow")
    return requirements + extra


def python_version(model_dir: Path) -> str:
    """The ``major.minor`` Python the model was logged with (``python_env.yaml``); Checkpoint's
    own where the model says nothing. The patch level is not matched (patch releases keep the ABI)."""
    path = model_dir / "python_env.yaml"
    if not path.is_file():
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    from mlflow.utils.environment import _PythonEnv

    try:
        wanted = str(_PythonEnv.from_yaml(str(path)).python or "")
    except Exception as exc:  # noqa: BLE001 - the author wrote this file: any failure is a reason
        raise EnvBuildError(f"python_env.yaml is unreadable ({type(exc).__name__}: {str(exc)[:200]})") from None
    parts = wanted.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise EnvBuildError(f"python_env.yaml names the Python version {wanted[:40]!r}; expected e.g. 3.11.7")
    return f"{int(parts[0])}.{int(parts[1])}"


def env_key(requirements: list[str], python: str) -> str:
    """The cache key of an environment: the same Python minor version and the same set of
    requirements (order, case and spacing aside) share one environment."""
    canonical = "\n".join(sorted({_canonical(r) for r in requirements}))
    return hashlib.sha256(f"v{KEY_VERSION}\npython {python}\n{canonical}".encode()).hexdigest()[:32]


def _canonical(line: str) -> str:
    requirement = Requirement(line)
    requirement.name = canonicalize_name(requirement.name)
    return str(requirement)


def find_python(version: str) -> str:
    """An interpreter of ``version`` (``major.minor``) on this machine: Checkpoint's own when it
    is that version, else ``python<version>`` on the system path."""
    own = getattr(sys, "_base_executable", sys.executable)
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version and own:
        return own
    found = shutil.which(f"python{version}", path=SEARCH_PATH)
    if found is None:
        raise EnvBuildError(
            f"the model needs Python {version} (its python_env.yaml) and this machine has none "
            f"(Checkpoint's is {sys.version_info.major}.{sys.version_info.minor}; looked on {SEARCH_PATH})"
        )
    return found


@dataclass(frozen=True)
class Envs:
    """Builds and caches models' environments under ``root``; ``uv_cache`` is uv's own download
    cache (kept across builds: a later build of other requirements reuses its wheels)."""

    root: Path
    uv: str
    uv_cache: Path
    limits: sandbox.Limits

    def ensure(self, model_dir: Path) -> Path:
        """The directory of the environment for the model in ``model_dir``, built if need be."""
        requirements_file = model_dir / "requirements.txt"
        if not requirements_file.is_file():
            raise EnvBuildError("the model has no requirements.txt to build its environment from")
        requirements = with_evaluator_needs(allowed_requirements(requirements_file.read_text(errors="replace")))
        python = python_version(model_dir)
        key = env_key(requirements, python)
        target = self.root / key
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits, then finds it built
            if (target / "pyvenv.cfg").is_file():
                log.info("model environment %s reused (Python %s)", key, python)
                return target
            self._build(target, requirements, find_python(python))
        return target

    def _build(self, target: Path, requirements: list[str], python: str) -> None:
        started = time.monotonic()
        deadline = started + self.limits.timeout  # one deadline for the whole build
        with tempfile.TemporaryDirectory(prefix=f".build-{target.name}-", dir=self.root) as tmp:
            work = Path(tmp)
            env, home = work / "env", work / "home"
            home.mkdir()
            (work / "requirements.txt").write_text("\n".join(requirements) + "\n")
            self._uv(deadline, work, home, "venv", "--quiet", "--relocatable", "--python", python, str(env))
            self._uv(
                deadline,
                work,
                home,
                *("pip", "install", "--quiet", "--no-build", "--python", str(env / "bin" / "python")),
                *("-r", str(work / "requirements.txt")),
            )
            self._compile(work, home, python, env, target, deadline)
            readable(env)
            if target.exists():  # not a complete environment (no pyvenv.cfg): left by hand
                shutil.rmtree(target)
            os.rename(env, target)  # whole or not at all: a reader never sees a half-built one
        log.info(
            "model environment %s built in %.1f s (%s MB, Python from %s)",
            target.name,
            time.monotonic() - started,
            size_mb(target),
            python,
        )

    def _left(self, deadline: float) -> sandbox.Limits:
        """The limits of the build's next step: what is left of the build's deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise EnvBuildError(f"timed out after {self.limits.timeout:g} s")
        return replace(self.limits, timeout=left)

    def _compile(self, work: Path, home: Path, python: str, env: Path, target: Path, deadline: float) -> None:
        """Byte-compile the environment now: runs see it read-only, and compiling MLflow, pandas and
        the model's libraries at every load would add seconds to each. ``-I -S``: no ``.pth`` file
        of an installed wheel runs here; compiling parses files, it runs none of them."""
        argv = [python, "-I", "-S", "-m", "compileall", "-q", "-j", "0", "-s", str(env), "-p", str(target), str(env / "lib")]
        outcome = sandbox.run(
            argv,
            stdin=b"",
            cwd=work,
            env=sandbox.scrubbed_env(home),
            limits=self._left(deadline),
            isolation=sandbox.Isolation("none", ()),
        )
        if outcome.problem:  # a file that does not compile (exit 1) is left to fail, if ever imported, in the run
            raise EnvBuildError(f"compiling the environment: {outcome.problem}")

    def _uv(self, deadline: float, cwd: Path, home: Path, *args: str) -> None:
        env = sandbox.scrubbed_env(home) | {
            "UV_CACHE_DIR": str(self.uv_cache),
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_PROGRESS": "1",
        }
        env |= {name: os.environ[name] for name in PASSED_THROUGH if os.environ.get(name)}
        outcome = sandbox.run(
            [self.uv, *args], stdin=b"", cwd=cwd, env=env, limits=self._left(deadline), isolation=sandbox.Isolation("none", ())
        )
        if not outcome.ok:
            lines = [line for line in outcome.stderr_tail.splitlines() if line.strip()][-6:]
            why = outcome.problem or f"uv {args[0]} exited with status {outcome.returncode}"
            raise EnvBuildError(f"{why}: {' | '.join(lines)[:1500]}")


def readable(path: Path) -> None:
    """Make every file under ``path`` readable by anyone and every directory enterable: a root
    Checkpoint runs models as ``nobody``, and Checkpoint's umask may be stricter than uv assumes."""
    path.chmod(0o755)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            file = os.path.join(root, name)
            mode = os.lstat(file).st_mode
            if not stat.S_ISLNK(mode):
                os.chmod(file, stat.S_IMODE(mode) | 0o444 | (0o111 if mode & 0o100 else 0))


def find_uv() -> str | None:
    """The ``uv`` program: the one the ``uv`` package installed (``checkpoint-mlflow[envs]``), else on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def size_mb(path: Path) -> int:
    """The bytes under ``path`` in MB (each hard-linked file counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            stat = os.lstat(os.path.join(root, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total >> 20
