"""A plain `pip install` of Checkpoint works from anywhere, and the Dockerfile runs what the tests run.

The install test copies exactly what the Dockerfile's build stage copies into a temporary
directory, installs it (non-editable, with the Dockerfile's extras) into a fresh virtualenv,
and runs it from outside the checkout, so a missing ``package_data`` glob, a file the
Dockerfile forgets to copy, or a runtime import of a dev-only package (MLflow) fails here.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from checkpoint.demo.mlflow_server import free_port
from checkpoint.storage import db

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


# --- reading the Dockerfile -----------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str


def dockerfile_stages(path: Path = DOCKERFILE) -> list[list[Instruction]]:
    """The Dockerfile's instructions, continuation lines joined, split into build stages."""
    stages: list[list[Instruction]] = []
    logical = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        stages[-1].append(instruction)
        logical = ""
    assert not logical, "the Dockerfile ends inside a continued line"
    return stages


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected exactly one {keyword} in the stage, found {found}"
    return found[0]


def build_stage_sources() -> list[str]:
    """What the first stage copies from the build context (``COPY <src>... <dest>``)."""
    sources = []
    for instruction in dockerfile_stages()[0]:
        if instruction.keyword == "COPY":
            words = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
            sources += words[:-1]
    return sources


def pip_requirement() -> str:
    """The requirement the Dockerfile's build stage turns into wheels, e.g. ``.[postgres]``."""
    runs = " ".join(i.args for i in dockerfile_stages()[0] if i.keyword == "RUN")
    match = re.search(r"pip wheel .*?\"(\.\[[a-z,]+\])\"", runs)
    assert match, f'no `pip wheel ... ".[extras]"` in the build stage: {runs}'
    return match.group(1)


# --- a real install, outside the checkout ---------------------------------------------------------


@dataclass
class Installed:
    context: Path  # the copy of the build context that was installed
    venv: Path
    site_packages: Path
    workdir: Path
    env: dict[str, str]
    install_seconds: float

    def run(self, *args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            list(args),
            cwd=self.workdir,
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """Checkpoint pip-installed (not editable) into a new virtualenv from a copy of the build context."""
    base = tmp_path_factory.mktemp("packaging")
    context = base / "context"
    context.mkdir()
    for source in build_stage_sources():
        origin = ROOT / source
        assert origin.exists(), f"the Dockerfile copies {source}, which does not exist"
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, context / source)

    venv = base / "venv"
    started = time.monotonic()
    # No pip inside the new environment (ensurepip is the slow part): this process's pip installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True, timeout=120)
    pip_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", pip_requirement()],
        cwd=context,
        env=pip_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    seconds = time.monotonic() - started

    site_packages = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    workdir = base / "elsewhere"
    workdir.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(base / "home"),
        "LANG": "C.UTF-8",
        "CHECKPOINT_REGISTRY_URL": "http://127.0.0.1:9",
        "CHECKPOINT_DATA_DIR": str(base / "data"),
    }
    return Installed(context, venv, site_packages, workdir, env, seconds)


def test_install_is_quick_enough(installed):
    # Not a benchmark: a guard that the suite keeps using pip's local wheels rather than building them.
    assert installed.install_seconds < 90, f"venv + pip install took {installed.install_seconds:.0f} s"


def test_installed_cli_migrates_a_new_database(installed):
    head = db.head_revision(db.make_engine("sqlite://"))
    upgraded = installed.run("checkpoint", "db", "upgrade")
    database = Path(installed.env["CHECKPOINT_DATA_DIR"]) / "checkpoint.db"
    assert upgraded.stdout.strip() == f"database sqlite:///{database} is at revision {head}"
    assert database.is_file()
    current = installed.run("checkpoint", "db", "current")
    assert current.stdout.strip() == f"current: {head}  head: {head}"
    assert installed.run("checkpoint", "--version").stdout.strip().endswith(metadata.version("checkpoint-mlflow"))


PROBE = """
import importlib.util, json, checkpoint
from checkpoint import create_app
from checkpoint.storage import db
from checkpoint.app import frontend_dir
from checkpoint.services import services

app = create_app()
client = app.test_client()
css = client.get("/checkpoint/static/checkpoint.css")
missing = client.get("/checkpoint/no-such-page", headers={"Accept": "text/html"})
print(json.dumps({
    "package": checkpoint.__file__,
    "migrations": str(db.migrations_dir()),
    "frontend": str(frontend_dir()),
    "templates": app.template_folder,
    "static": app.static_folder,
    "revision": db.current_revision(services(app).engine),
    "healthz": [client.get("/checkpoint/healthz").status_code, client.get("/checkpoint/healthz").get_json()],
    "css": [css.status_code, len(css.data)],
    "missing": [missing.status_code, missing.mimetype, missing.get_data(as_text=True)],
    "mlflow_installed": importlib.util.find_spec("mlflow") is not None,
}))
"""


def test_installed_app_runs_from_site_packages(installed):
    installed.run("checkpoint", "db", "upgrade")
    probe = json.loads(installed.run("python", "-c", PROBE).stdout)
    site = installed.site_packages / "checkpoint"
    for key in ("package", "migrations", "frontend", "templates", "static"):
        path = Path(probe[key]).resolve()
        assert path.is_relative_to(site.resolve()), f"{key} is {path}, not inside {site}"
        assert not path.is_relative_to(ROOT), f"{key} is {path}, inside the checkout"
    assert probe["revision"] == db.head_revision(db.make_engine("sqlite://"))
    assert probe["healthz"] == [200, {"status": "ok"}]
    assert probe["css"][0] == 200
    assert probe["css"][1] == (installed.context / "checkpoint" / "web" / "static" / "checkpoint.css").stat().st_size
    status, mimetype, page = probe["missing"]
    assert (status, mimetype) == (404, "text/html")
    assert "/checkpoint/static/checkpoint.css" in page  # error.html rendered through base.html
    assert probe["mlflow_installed"] is False  # the runtime needs no MLflow: it only speaks HTTP to one


def test_every_source_file_is_installed(installed):
    """`packages=` and package_data globs are easy to outgrow: a new subpackage, nested template,
    asset or data file must ship too."""
    for folder, package in (("checkpoint", ""),):
        source = installed.context / folder
        shipped = {
            p.relative_to(source).as_posix()
            for p in source.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
        }
        assert shipped, folder
        target = installed.site_packages / "checkpoint" / package
        present = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
        assert shipped - present == set(), f"not installed from {folder}/"


# --- the Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_runs_what_the_tests_serve(served_checkpoint):
    """The image's command is `checkpoint serve`, the very command the served_checkpoint fixture runs."""
    final = dockerfile_stages()[-1]
    assert not [i for i in final if i.keyword == "ENTRYPOINT"]
    assert json.loads(only(final, "CMD").args) == ["checkpoint", "serve"]
    # `checkpoint` is the console script for checkpoint.cli:main ...
    (script,) = metadata.entry_points(group="console_scripts", name="checkpoint")
    assert script.value == "checkpoint.cli:main"
    # ... which is what the fixture starts (as `python -m checkpoint.cli serve`, flags for a test port).
    assert served_checkpoint.process.args[1:4] == ["-m", "checkpoint.cli", "serve"]
    assert served_checkpoint.process.poll() is None


def test_dockerfile_runtime_settings():
    stages = dockerfile_stages()
    assert len(stages) == 2
    for stage in stages:
        assert stage[0].args.split()[0] == "python:3.11-slim"
    final = stages[-1]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(i.args for i in final if i.keyword == "ENV")))
    assert env["CHECKPOINT_HOST"] == "0.0.0.0"
    assert env["CHECKPOINT_DATA_DIR"] == "/data"
    assert only(final, "EXPOSE").args == env["CHECKPOINT_PORT"] == "5000"
    assert json.loads(only(final, "VOLUME").args) == ["/data"]
    assert pip_requirement() == ".[postgres]"
    runs = " ".join(i.args for stage in stages for i in stage if i.keyword == "RUN").lower()
    assert not re.search(r"(?<!checkpoint-)\bmlflow\b", runs), "the image installs MLflow"


def test_dockerfile_runs_as_a_non_root_user():
    final = dockerfile_stages()[-1]
    user = only(final, "USER").args.split(":")[0]
    assert user not in ("", "root", "0")
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    created = re.search(rf"useradd [^&;]*--uid (\d+)[^&;]* {re.escape(user)}\b", runs)
    assert created, f"the image never creates the user {user!r}"
    assert int(created.group(1)) != 0
    assert re.search(rf"chown {re.escape(user)}\S* /data", runs), "the data volume is not the user's"
    # The user is switched to after every RUN that needs root.
    keywords = [i.keyword for i in final]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_dockerfile_healthcheck_asks_healthz(served_checkpoint):
    final = dockerfile_stages()[-1]
    options, _, command = only(final, "HEALTHCHECK").args.partition("CMD ")
    assert "--interval=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "/checkpoint/healthz" in argv[2]
    probe = [sys.executable, *argv[1:]]  # the image's `python` is the interpreter on PATH
    port = served_checkpoint.url.rsplit(":", 1)[1]
    healthy = subprocess.run(probe, env={"CHECKPOINT_PORT": port}, capture_output=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    down = subprocess.run(probe, env={"CHECKPOINT_PORT": str(free_port())}, capture_output=True, timeout=30)
    assert down.returncode != 0


def test_dockerignore_keeps_the_context_small_but_complete():
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p) for p in patterns)

    for needed in build_stage_sources():
        assert not ignored(needed), f"{needed} is copied by the Dockerfile but excluded by .dockerignore"
    for heavy in (".venv", ".git", "tests/screenshots", "checkpoint.db"):
        assert ignored(heavy), f"{heavy} would be sent to the Docker daemon"
