"""docs/deploy.md and deploy/: the files a platform engineer copies say what the code does.

No Docker engine or cluster is needed: the compose file and the Kubernetes manifests are parsed and
their properties checked (MLflow reachable from Checkpoint only, real variable names, probes, uids).
The last test follows the document's plain-gunicorn path for real: an MLflow server started with
the compose file's flags, PostgreSQL, `checkpoint db upgrade`, then gunicorn with the documented flags.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa
import yaml

from checkpoint import identity
from checkpoint.demo.mlflow_server import MlflowServer, free_port, wait_http
from checkpoint.edge.serving import default_options
from checkpoint.review import governance
from checkpoint.review.policy import Policy
from checkpoint.settings import Settings
from tests.support.apps import drop_database

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOC = ROOT / "docs" / "deploy.md"
BIN = Path(sys.executable).parent
VARIABLE = re.compile(r"\bCHECKPOINT_[A-Z0-9_]*[A-Z0-9]\b")
# The modules that read the server's configuration; every variable they name must be documented.
CONFIG_MODULES = ("settings.py", "cli.py")


def code_variables(modules: tuple[str, ...] | None = None) -> set[str]:
    files = [ROOT / "checkpoint" / m for m in modules] if modules else (ROOT / "checkpoint").rglob("*.py")
    return {name for path in files for name in VARIABLE.findall(path.read_text())}


def doc_variables() -> set[str]:
    return set(VARIABLE.findall(DOC.read_text()))


# --- docker compose ---------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def env_example_names() -> list[str]:
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    return [line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z_]+=", line)]


_REFERENCE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}``, as `docker compose` does it."""

    def one(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _REFERENCE.sub(one, value)


def filled_env() -> dict[str, str]:
    """A deploy/.env as the document says to make it: every name of .env.example, a hex value each."""
    return {name: uuid.uuid4().hex + uuid.uuid4().hex[:16] for name in env_example_names() if name != "CHECKPOINT_PUBLIC_URL"}


def service_env(service: dict, env: dict[str, str]) -> dict[str, str]:
    return {key: interpolate(str(value), env) for key, value in service.get("environment", {}).items()}


def flag(command: list[str], name: str) -> str:
    (value,) = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]
    return value


def test_compose_mlflow_is_reachable_from_checkpoint_only():
    spec = compose()
    services, networks = spec["services"], spec["networks"]
    assert set(services) == {"postgres", "mlflow", "checkpoint-migrate", "checkpoint"}
    assert [name for name, s in services.items() if s.get("ports")] == ["checkpoint"]
    assert "expose" not in services["mlflow"] or services["mlflow"]["expose"] == ["5000"]

    def members(network: str) -> set[str]:
        return {name for name, s in services.items() if network in s.get("networks", [])}

    mlflow_networks = services["mlflow"]["networks"]
    assert mlflow_networks, "MLflow must be on a named network, not the default one"
    for network in mlflow_networks:
        assert networks[network].get("internal") is True, f"MLflow's network {network} routes to the outside"
    # Who can open a connection to MLflow: Checkpoint, and the database it itself connects to.
    neighbours = set().union(*(members(n) for n in mlflow_networks)) - {"mlflow"}
    assert neighbours == {"checkpoint", "checkpoint-migrate", "postgres"}
    # The one network only MLflow and the serving Checkpoint share carries the HTTP traffic.
    assert {n: members(n) for n in mlflow_networks if members(n) == {"mlflow", "checkpoint"}}, mlflow_networks
    assert "registry" not in services["checkpoint-migrate"]["networks"]
    # Checkpoint's published port needs a network that is not internal, and MLflow is not on it.
    published = [n for n in services["checkpoint"]["networks"] if not networks[n].get("internal")]
    assert published and not set(published) & set(mlflow_networks)


def test_compose_checkpoint_env_is_real_settings_and_starts():
    spec, env = compose(), filled_env()
    services = spec["services"]
    references = list(_REFERENCE.finditer((DEPLOY / "docker-compose.yml").read_text()))
    required = {m["name"] for m in references if m["op"] == ":?"}
    assert required <= set(env_example_names()), "a variable the compose file needs is missing from .env.example"
    example = (DEPLOY / ".env.example").read_text()
    assert all(m["name"] in example for m in references), "every variable the compose file reads is explained there"
    with pytest.raises(KeyError, match="set it in deploy/.env"):
        service_env(services["checkpoint"], {})

    known = code_variables()
    for name in ("checkpoint", "checkpoint-migrate"):
        checkpoint_env = service_env(services[name], env)
        assert set(checkpoint_env) <= known, f"{name}: not settings Checkpoint reads: {set(checkpoint_env) - known}"
        assert checkpoint_env["CHECKPOINT_DATABASE_URL"].startswith("postgresql+psycopg://checkpoint:")
        assert checkpoint_env["CHECKPOINT_SECRET_KEY"] == env["CHECKPOINT_SECRET_KEY"]
    assert services["checkpoint"]["environment"] == services["checkpoint-migrate"]["environment"]
    # The configuration is one Checkpoint accepts at start-up, as `checkpoint serve` checks it.
    settings = Settings.from_env(checkpoint_env)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.registry_password == env["MLFLOW_ADMIN_PASSWORD"]
    assert identity.from_env(settings.registry_url, checkpoint_env).mode == "mlflow"
    governance.load(env=checkpoint_env)
    Policy.from_env(checkpoint_env)

    # MLflow lets in exactly the Host Checkpoint sends: the host:port of CHECKPOINT_REGISTRY_URL.
    mlflow = services["mlflow"]
    upstream = urlsplit(settings.registry_url)
    assert upstream.hostname == "mlflow" and f"{upstream.hostname}:{upstream.port}" == flag(mlflow["command"], "--allowed-hosts")
    assert flag(mlflow["command"], "--port") == str(upstream.port)
    mlflow_env = service_env(mlflow, env)
    assert mlflow_env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://mlflow:")
    assert mlflow_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == settings.registry_password
    assert "--serve-artifacts" in mlflow["command"] and "--app-name=basic-auth" in mlflow["command"]
    assert re.fullmatch(r"ghcr\.io/mlflow/mlflow:v3\.17\.\d+-full", mlflow["image"])
    assert not [arg for arg in mlflow["command"] if "password" in arg.lower() or "postgresql" in arg], "secrets on a command line"


def test_compose_healthchecks_and_start_order():
    services = compose()["services"]
    checkpoint, migrate, mlflow, postgres = (services[n] for n in ("checkpoint", "checkpoint-migrate", "mlflow", "postgres"))
    assert re.search(r"/checkpoint/(readyz|healthz)'", " ".join(checkpoint["healthcheck"]["test"]))
    assert "/health'" in " ".join(mlflow["healthcheck"]["test"])
    assert postgres["healthcheck"]["test"][1] == "pg_isready"
    assert migrate["command"] == ["checkpoint", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert checkpoint["depends_on"] == {
        "checkpoint-migrate": {"condition": "service_completed_successfully"},
        "mlflow": {"condition": "service_healthy"},
    }
    assert migrate["depends_on"] == mlflow["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    graceful = default_options("127.0.0.1", 5000)["graceful_timeout"]
    assert int(checkpoint["stop_grace_period"].rstrip("s")) > graceful
    # The image is built from this repository's Dockerfile, whose command is `checkpoint serve`.
    assert (DEPLOY / checkpoint["build"]["context"] / checkpoint["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert "command" not in checkpoint
    init = postgres["volumes"][1].split(":")
    assert (DEPLOY / init[0]).stat().st_mode & 0o111, "the init script must be executable"
    assert init[1].startswith("/docker-entrypoint-initdb.d/")


def compose_command() -> list[str] | None:
    for candidate in (["docker", "compose"], ["docker-compose"]):
        try:
            if subprocess.run([*candidate, "version"], capture_output=True, timeout=30).returncode == 0:
                return candidate
        except FileNotFoundError:
            continue
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    """`docker compose config` where a Compose is installed (it needs no engine)."""
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed; the parsing tests above still ran")
    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in filled_env().items()))
    compose_file = str(DEPLOY / "docker-compose.yml")
    clean = {k: v for k, v in os.environ.items() if k not in env_example_names()}
    ok = subprocess.run(
        [*command, "-f", compose_file, "--env-file", str(dotenv), "config"], capture_output=True, text=True, timeout=60, env=clean
    )
    assert ok.returncode == 0, ok.stderr
    rendered = yaml.safe_load(ok.stdout)
    assert "ports" not in rendered["services"]["mlflow"]
    (tmp_path / "empty.env").write_text("")
    missing = subprocess.run(
        [*command, "-f", compose_file, "--env-file", str(tmp_path / "empty.env"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
    )
    assert missing.returncode != 0 and "set it in deploy/.env" in missing.stderr + missing.stdout


# --- Kubernetes ---------------------------------------------------------------------------------


def manifests() -> list[dict]:
    return [
        doc
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def one(kind: str, name: str) -> dict:
    (found,) = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def dockerfile_uid() -> int:
    return int(re.search(r"useradd [^&]*--uid (\d+)", (ROOT / "Dockerfile").read_text())[1])


def test_k8s_manifests_parse_and_name_their_files():
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in manifests())
    assert kinds == sorted(
        [
            ("ConfigMap", "mlflow-auth"),
            ("Deployment", "checkpoint"),
            ("Deployment", "mlflow"),
            ("Job", "checkpoint-migrate"),
            ("NetworkPolicy", "mlflow-only-from-checkpoint"),
            ("PersistentVolumeClaim", "mlflow-data"),
            ("PodDisruptionBudget", "checkpoint"),
            ("Service", "checkpoint"),
            ("Service", "mlflow"),
        ]
    )
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / "k8s" / resource).is_file()
    assert "migrate-job.yaml" not in kustomization["resources"]  # applied and awaited first, per deploy
    # The ConfigMap carries the same basic-auth file as the compose example.
    assert one("ConfigMap", "mlflow-auth")["data"]["basic_auth.ini"] == (DEPLOY / "mlflow" / "basic_auth.ini").read_text()


def test_k8s_checkpoint_deployment():
    deployment = one("Deployment", "checkpoint")
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    assert spec["replicas"] >= 2
    assert matches(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
    (container,) = pod["containers"]
    assert "command" not in container and "args" not in container  # the image's `checkpoint serve`
    assert container["livenessProbe"]["httpGet"]["path"] == "/checkpoint/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/checkpoint/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/checkpoint/readyz"
    assert container["ports"][0]["containerPort"] == 5000
    uid = dockerfile_uid()
    assert uid == 10001
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == uid
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/data"}  # read-only root
    names = {e["name"] for e in container["env"]}
    assert names <= code_variables(), names - code_variables()
    assert container["envFrom"] == [{"secretRef": {"name": "checkpoint"}}]
    assert not [e for e in container["env"] if re.search(r"PASSWORD|SECRET|TOKEN|DATABASE_URL", e["name"])]
    graceful = default_options("127.0.0.1", 5000)["graceful_timeout"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pause + graceful
    env = {e["name"]: e["value"] for e in container["env"]}
    Settings.from_env({**env, "CHECKPOINT_DATABASE_URL": "postgresql+psycopg://checkpoint:x@db:5432/checkpoint"})
    service = one("Service", "checkpoint")
    assert matches(service["spec"]["selector"], spec["template"]["metadata"]["labels"])
    budget = one("PodDisruptionBudget", "checkpoint")["spec"]["selector"]["matchLabels"]
    assert matches(budget, spec["template"]["metadata"]["labels"])


def test_k8s_migration_job_runs_db_upgrade_with_the_same_image():
    job = one("Job", "checkpoint-migrate")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (server,) = one("Deployment", "checkpoint")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["checkpoint", "db", "upgrade"]
    assert container["image"] == server["image"]
    assert container["envFrom"] == server["envFrom"]
    assert {e["name"] for e in container["env"]} <= code_variables()
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == dockerfile_uid()


def test_k8s_network_policy_lets_only_checkpoint_reach_mlflow():
    policy = one("NetworkPolicy", "mlflow-only-from-checkpoint")["spec"]
    mlflow_pods = one("Deployment", "mlflow")["spec"]["template"]["metadata"]["labels"]
    server_pods = one("Deployment", "checkpoint")["spec"]["template"]["metadata"]["labels"]
    job_pods = one("Job", "checkpoint-migrate")["spec"]["template"]["metadata"]["labels"]
    assert matches(policy["podSelector"]["matchLabels"], mlflow_pods)
    assert not matches(policy["podSelector"]["matchLabels"], server_pods)
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert set(source) == {"podSelector"}, "no namespaceSelector or ipBlock: Checkpoint's pods only"
    assert matches(source["podSelector"]["matchLabels"], server_pods)
    assert not matches(source["podSelector"]["matchLabels"], job_pods)
    assert not matches(source["podSelector"]["matchLabels"], mlflow_pods)
    assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]


def test_k8s_mlflow_is_a_cluster_ip_that_accepts_checkpoints_host():
    service = one("Service", "mlflow")
    assert service["spec"]["type"] == "ClusterIP"
    deployment = one("Deployment", "mlflow")
    assert matches(service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (server,) = one("Deployment", "checkpoint")["spec"]["template"]["spec"]["containers"]
    registry = urlsplit({e["name"]: e.get("value") for e in server["env"]}["CHECKPOINT_REGISTRY_URL"])
    assert (registry.hostname, registry.port) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
    assert flag(container["command"], "--allowed-hosts") == f"{registry.hostname}:{registry.port}"
    assert {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"} in container["env"]
    assert container["command"] == compose()["services"]["mlflow"]["command"]
    assert container["image"] == compose()["services"]["mlflow"]["image"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


# --- docs/deploy.md -----------------------------------------------------------------------------


def test_every_variable_in_the_doc_is_read_by_the_code():
    unknown = doc_variables() - code_variables()
    assert not unknown, f"docs/deploy.md names variables no code reads: {sorted(unknown)}"


def test_every_variable_the_server_reads_is_in_the_doc():
    missing = code_variables(CONFIG_MODULES) - doc_variables()
    assert not missing, f"docs/deploy.md does not document: {sorted(missing)}"


def documented_command(starts: str) -> list[str]:
    """The first command in the document's shell blocks starting with ``starts``, continuation lines joined."""
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.strip().startswith(starts):
                return shlex.split(line.split("#", 1)[0] if " #" in line else line)
    raise AssertionError(f"docs/deploy.md shows no `{starts}` command")


def test_gunicorn_conf_holds_what_checkpoint_serve_uses():
    conf: dict = {}
    exec(compile((DEPLOY / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), conf)  # as gunicorn -c does
    options = default_options("0.0.0.0", 5000)
    same = (
        "bind",
        "worker_class",
        "workers",
        "threads",
        "keepalive",
        "timeout",
        "graceful_timeout",
        "logger_class",
        "errorlog",
        "proc_name",
        "control_socket_disable",
        "child_exit",
    )
    assert {k: conf[k] for k in same} == {k: options[k] for k in same}
    # The rest come from the environment under `checkpoint serve` (a flag or the default here).
    assert set(options) - set(same) <= {"accesslog", "loglevel", "forwarded_allow_ips"}
    argv = documented_command("gunicorn -c")
    assert argv[1:3] == ["-c", "deploy/gunicorn.conf.py"] and argv[-1] == "checkpoint:create_app()"


# --- following the document: plain gunicorn, PostgreSQL, MLflow as the compose file runs it ----------


@pytest.fixture
def fresh_postgres(postgres_admin):
    name = f"cp_deploy_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield postgres_admin.url.set(database=name).render_as_string(hide_password=False)
    drop_database(postgres_admin, name)


def mlflow_like_compose(root: Path, secrets: dict[str, str]) -> MlflowServer:
    """``mlflow server`` with the compose file's flags and environment, on loopback and SQLite."""
    service = compose()["services"]["mlflow"]
    port = free_port()
    own = ("--host=", "--port=", "--artifacts-destination=", "--serve-artifacts")  # MlflowServer sets these
    extra = [arg for arg in service["command"][2:] if not arg.startswith(own)]
    extra = [f"--allowed-hosts=127.0.0.1:{port}" if arg.startswith("--allowed-hosts=") else arg for arg in extra]
    env = service_env(service, secrets)
    env.pop("MLFLOW_BACKEND_STORE_URI")  # SQLite here: MlflowServer passes --backend-store-uri
    root.mkdir(parents=True)
    ini = root / "basic_auth.ini"
    ini.write_text(
        re.sub(
            r"(?m)^database_uri = .*$",
            f"database_uri = sqlite:///{root / 'basic_auth.db'}",
            (DEPLOY / "mlflow" / "basic_auth.ini").read_text(),
        )
    )
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
    return MlflowServer(root, port=port, workers=1, extra_args=extra, env=env)


def test_following_the_gunicorn_path_of_the_deploy_doc(fresh_postgres, tmp_path):
    secrets = filled_env()
    admin = ("admin", secrets["MLFLOW_ADMIN_PASSWORD"])
    with mlflow_like_compose(tmp_path / "mlflow", secrets) as mlflow:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINT_")}
        env.update(service_env(compose()["services"]["checkpoint"], secrets))
        port = free_port()
        env.update(
            HOME=str(tmp_path),
            CHECKPOINT_DATA_DIR=str(tmp_path / "data"),
            CHECKPOINT_REGISTRY_URL=mlflow.url,
            CHECKPOINT_DATABASE_URL=fresh_postgres,
            CHECKPOINT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        )

        upgrade = documented_command("checkpoint db upgrade")
        done = subprocess.run(
            [str(BIN / upgrade[0]), *upgrade[1:]], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "is at revision" in done.stdout and secrets["DB_PASSWORD_CHECKPOINT"] not in done.stdout

        argv = documented_command("gunicorn -c")
        argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
        argv[argv.index("-c") + 1] = str(ROOT / argv[argv.index("-c") + 1])
        export = documented_command("export PROMETHEUS_MULTIPROC_DIR=")
        assert export[1].startswith("PROMETHEUS_MULTIPROC_DIR=/")
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
        (tmp_path / "metrics").mkdir()
        log_path = tmp_path / "gunicorn.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(BIN / argv[0]), *argv[1:]],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/checkpoint/healthz", timeout=60, process=process, log=log_path)
            with requests.Session() as http:
                assert http.get(f"{url}/checkpoint/healthz", timeout=10).json() == {"status": "ok"}
                ready = http.get(f"{url}/checkpoint/readyz", timeout=10)
                assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
                search = f"{url}/api/2.0/mlflow/registered-models/search"
                assert http.get(search, timeout=30).status_code == 401  # MLflow's basic-auth, through Checkpoint
                assert http.get(search, auth=admin, timeout=30).status_code == 200
                scrape = http.get(f"{url}/checkpoint/metrics", timeout=10)
                assert scrape.status_code == 200 and scrape.headers["Content-Type"].startswith("text/plain")
            # MLflow itself refuses any Host but the one Checkpoint sends (--allowed-hosts).
            direct = f"{mlflow.url}/api/2.0/mlflow/registered-models/search"
            assert requests.get(direct, auth=admin, headers={"Host": "mlflow.example.com"}, timeout=30).status_code == 403
            assert requests.get(direct, auth=admin, timeout=30).status_code == 200
            text = log_path.read_text()
            assert "Using worker: checkpoint.edge.serving.ProxyWorker" in text, text[-2000:]
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code = process.wait(timeout=10)
        assert code == 0, log_path.read_text()[-3000:]
        assert log_path.read_text().count("Booting worker with pid") == default_options("127.0.0.1", port)["workers"]
