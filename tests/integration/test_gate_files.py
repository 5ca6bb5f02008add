"""Issue #12, class 1: a registered version's *files* are governed, not only its pointers.

The attacks go through Checkpoint's port as an ordinary user would send them (the MLflow
client, or the HTTP calls it makes); every result is read back from MLflow directly, and the
champion is loaded from MLflow (not through Checkpoint) to see that it still predicts what was
reviewed. Next to each attack, the legitimate path still works.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import quote

import cloudpickle
import mlflow
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import RestException

from checkpoint import create_app
from checkpoint.registry import Registry
from checkpoint.review import content
from checkpoint.review.content import ArtifactWrite
from checkpoint.services import services
from tests.support.apps import LiveCheckpoint, live, served
from tests.support.auth import ADMIN, PASSWORDS, grant, mlflow_mode
from tests.support.governed import unique

ART = "/api/2.0/mlflow-artifacts/artifacts"


class Constant(mlflow.pyfunc.PythonModel):
    """A model whose prediction says which model it is."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, context, model_input, params=None):
        return [self.value] * len(model_input)


FRAME = pd.DataFrame({"x": [1.0, 2.0]})
# Another model's ``python_model.pkl``, as MLflow's pyfunc flavour writes it: it predicts 9.0.
EVIL = cloudpickle.dumps(Constant(9.0))


def log_version(tracking_uri: str, name: str, value: float, *, layout: str = "logged_model") -> tuple[str, str]:
    """Log a Constant(value) model and register it as a version of ``name`` (straight on MLflow
    unless ``tracking_uri`` is Checkpoint's). ``layout``: MLflow 3's logged model, or the older
    run-artifact layout (files under the run, registered from ``runs:/``). Returns (version, run id)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("gate-files") or None
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("gate-files")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            if layout == "logged_model":
                info = mlflow.pyfunc.log_model(name="model", python_model=Constant(value))
                source = info.model_uri
            else:
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    mlflow.pyfunc.save_model(f"{tmp}/model", python_model=Constant(value))
                    mlflow.log_artifacts(f"{tmp}/model", artifact_path="model")
                source = f"runs:/{run.info.run_id}/model"
        version = mlflow.register_model(source, name)
    finally:
        mlflow.set_tracking_uri(None)
    return version.version, run.info.run_id


def predictions(mlflow_url: str, uri: str) -> list[float]:
    """Load ``uri`` from MLflow itself (never through Checkpoint) and predict."""
    mlflow.set_tracking_uri(mlflow_url)
    try:
        return list(mlflow.pyfunc.load_model(uri).predict(FRAME))
    finally:
        mlflow.set_tracking_uri(None)


def stored_path(mlflow_url: str, name: str, version: str) -> str:
    """The version's files, as a path under MLflow's served artifact root."""
    uri = MlflowClient(tracking_uri=mlflow_url).get_model_version_download_uri(name, version)
    assert uri.startswith("mlflow-artifacts:"), uri
    return re.sub(r"^mlflow-artifacts:(//[^/]*)?/*", "", uri)


def file_bytes(mlflow_url: str, path: str) -> bytes:
    answer = requests.get(f"{mlflow_url}{ART}/{path}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.content


def refused(answer: requests.Response, *words: str) -> None:
    """A clear MLflow-shaped 403 that says why."""
    assert answer.status_code == 403, (answer.status_code, answer.text[:300])
    body = answer.json()
    assert body["error_code"] == "PERMISSION_DENIED"
    assert body["message"].startswith("Checkpoint: ")
    for word in words:
        assert word in body["message"], body["message"]


@pytest.fixture(autouse=True)
def _fresh_artifact_repositories() -> None:
    """MLflow's client caches a run's artifact repository by run id alone, whatever the tracking
    URI: a run logged straight to MLflow would be written there again, past Checkpoint (or to an
    earlier test's Checkpoint). A fact of MLflow's client, not a way around the gate."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking_utils._artifact_repos_cache.clear()


@pytest.fixture
def gate(mlflow_server, sqlite_url, tmp_path, monkeypatch) -> Iterator[LiveCheckpoint]:
    """Checkpoint with a rule for ``files-*``: two approvals and a required tag check, so a
    request can be approved and still wait (the window in which files may change)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        "  - name: files\n    models: ['files-*']\n    targets: ['alias:champion']\n    required_approvals: 2\n"
        "    checks:\n      - {name: validated, kind: tags, tags: {qa: passed}}\n"
    )
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    app = create_app(
        {
            "registry_url": mlflow_server.url,
            "database_url": sqlite_url,
            "data_dir": tmp_path,
            "policy_file": policy,
            "background": False,
        }
    )
    with live(app, sqlite_url) as served:
        yield served


@pytest.fixture(scope="module")
def champion(mlflow_server) -> dict:
    """``fraud-…`` v1 (predicts 1.0, MLflow 3 logged model) holds champion; v2 (predicts 2.0,
    the run-artifact layout) holds Production. Made on MLflow; the attacks below leave it as it is."""
    url = mlflow_server.url
    name = unique("fraud")
    v1, run1 = log_version(url, name, 1.0)
    v2, run2 = log_version(url, name, 2.0, layout="run")
    direct = MlflowClient(tracking_uri=url)
    direct.set_registered_model_alias(name, "champion", v1)
    direct.transition_model_version_stage(name, v2, "Production")
    assert file_bytes(url, stored_path(url, name, v1) + "/python_model.pkl") != EVIL
    return {
        "name": name,
        "v1": v1,
        "v2": v2,
        "run1": run1,
        "run2": run2,
        "evil": EVIL,
        "path1": stored_path(url, name, v1),
        "path2": stored_path(url, name, v2),
    }


def unchanged(mlflow_url: str, champion: dict) -> None:
    """The champion and the Production version still load from MLflow and predict as reviewed."""
    assert predictions(mlflow_url, f"models:/{champion['name']}@champion") == [1.0, 1.0]
    assert predictions(mlflow_url, f"models:/{champion['name']}/Production") == [2.0, 2.0]


# -- the attacks ------------------------------------------------------------------------


def test_overwriting_the_champions_model_file_is_refused(sqlite_checkpoint, mlflow_server, champion):
    base, path = sqlite_checkpoint.url, champion["path1"]
    assert re.match(r"^\d+/models/m-[0-9a-f]{32}/artifacts$", path), path  # MLflow 3 layout (MLFLOW.md §7)
    answer = requests.put(f"{base}{ART}/{path}/python_model.pkl", data=champion["evil"], auth=("mallory", "x"), timeout=30)
    refused(answer, f"registered model '{champion['name']}' version {champion['v1']}", "immutable", "python_model.pkl")
    gone = requests.delete(f"{base}{ART}/{path}", auth=("mallory", "x"), timeout=30)
    refused(gone, "deleting", f"version {champion['v1']}")
    unchanged(mlflow_server.url, champion)


SPELLINGS = [
    # (id, method, URL path after Checkpoint's origin; {p} is the champion's directory)
    ("ajax-api", "PUT", "/ajax-api/2.0/mlflow-artifacts/artifacts/{p}/python_model.pkl"),
    ("static-prefix", "PUT", "/mlflow/api/2.0/mlflow-artifacts/artifacts/{p}/python_model.pkl"),
    ("leading-double-slash", "PUT", "//api/2.0/mlflow-artifacts/artifacts/{p}/python_model.pkl"),
    ("interior-double-slash", "PUT", "/api/2.0/mlflow-artifacts/artifacts/{p}//python_model.pkl"),
    ("dot-segment", "PUT", "/api/2.0/mlflow-artifacts/artifacts/{p}/./python_model.pkl"),
    ("dot-dot", "PUT", "/api/2.0/mlflow-artifacts/artifacts/{p}/x/../python_model.pkl"),
    ("encoded-slashes", "PUT", "/api/2.0/mlflow-artifacts/artifacts/{pe}%2Fpython_model.pkl"),
    ("double-encoded", "PUT", "/api/2.0/mlflow-artifacts/artifacts/{pe2}%252Fpython_model.pkl"),
    ("encoded-route", "PUT", "/api/2.0/mlflow%2Dartifacts/artifacts/{p}/python_model.pkl"),
    ("preview", "PUT", "/api/2.0/preview/mlflow-artifacts/artifacts/{p}/python_model.pkl"),
    ("delete-file", "DELETE", "/api/2.0/mlflow-artifacts/artifacts/{p}/MLmodel"),
    ("delete-model-root", "DELETE", "/api/2.0/mlflow-artifacts/artifacts/{parent}"),
    ("delete-experiment", "DELETE", "/ajax-api/2.0/mlflow-artifacts/artifacts/{exp}"),
    ("delete-everything", "DELETE", "/api/2.0/mlflow-artifacts/artifacts/"),
    ("mpu-create", "POST", "/api/2.0/mlflow-artifacts/mpu/create/{p}/python_model.pkl"),
    ("mpu-complete", "POST", "/api/2.0/mlflow-artifacts/mpu/complete/{p}/python_model.pkl"),
    ("mpu-abort", "POST", "/ajax-api/2.0/mlflow-artifacts/mpu/abort/{p}/python_model.pkl"),
]


@pytest.mark.parametrize(("method", "template"), [s[1:] for s in SPELLINGS], ids=[s[0] for s in SPELLINGS])
def test_every_route_and_spelling_to_the_champions_files_is_refused(sqlite_checkpoint, mlflow_server, champion, method, template):
    path = champion["path1"]
    url = sqlite_checkpoint.url + template.format(
        p=path,
        pe=quote(path, safe=""),
        pe2=quote(quote(path, safe=""), safe=""),
        parent=path.rsplit("/", 1)[0],
        exp=path.split("/", 1)[0],
    )
    body = champion["evil"] if method == "PUT" else b"{}"
    headers = {"Content-Type": "application/json"} if method == "POST" else {}
    answer = requests.request(method, url, data=body, headers=headers, auth=("mallory", "x"), timeout=30)
    refused(answer, "refused")
    unchanged(mlflow_server.url, champion)


def test_the_run_layout_and_mlflows_older_upload_route_are_refused(sqlite_checkpoint, mlflow_server, champion):
    """v2 lives in its run's artifacts (``runs:/`` registration): the UI's upload route writes there."""
    base, run2 = sqlite_checkpoint.url, champion["run2"]
    assert champion["path2"].endswith(f"{run2}/artifacts/model"), champion["path2"]
    upload = requests.post(
        f"{base}/ajax-api/2.0/mlflow/upload-artifact",
        data=champion["evil"],
        auth=("mallory", "x"),
        params={"run_uuid": run2, "path": "model/python_model.pkl"},
        timeout=30,
    )
    refused(upload, f"version {champion['v2']}", "stage Production")
    # Flask reads the first of repeated query keys: the second spelling must not decide.
    twice = requests.post(
        f"{base}/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run2}&path=model/MLmodel&path=plot.txt",
        data=b"x",
        auth=("mallory", "x"),
        timeout=30,
    )
    refused(twice, f"version {champion['v2']}")
    put = requests.put(f"{base}{ART}/{champion['path2']}/python_model.pkl", data=champion["evil"], timeout=30)
    refused(put, f"version {champion['v2']}")
    run_dir = requests.delete(f"{base}{ART}/{champion['path2'].rsplit('/', 2)[0]}", timeout=30)
    refused(run_dir, f"version {champion['v2']}")
    presigned = requests.post(
        f"{base}/api/2.0/mlflow/artifacts/presigned-upload-url",
        timeout=30,
        json={"run_id": run2, "path": "model/python_model.pkl"},
    )
    refused(presigned, f"version {champion['v2']}")
    unchanged(mlflow_server.url, champion)


def test_a_prod_copy_shares_the_directory_and_is_refused_too(sqlite_checkpoint, mlflow_server):
    url = mlflow_server.url
    name = unique("fraud")
    version, _ = log_version(url, name, 1.0)
    direct = MlflowClient(tracking_uri=url)
    prod = "prod." + name
    copy = direct.copy_model_version(f"models:/{name}/{version}", prod)
    path = stored_path(url, name, version)
    assert stored_path(url, prod, copy.version) == path  # the same directory (MLFLOW.md)
    direct.delete_model_version(name, version)  # only the copy names the files now
    answer = requests.put(f"{sqlite_checkpoint.url}{ART}/{path}/python_model.pkl", data=EVIL, timeout=30)
    refused(answer, f"registered model '{prod}' version {copy.version}")
    assert predictions(url, f"models:/{prod}/{copy.version}") == [1.0, 1.0]


def test_the_real_client_logging_into_a_registered_model_directory_is_refused(
    sqlite_checkpoint, mlflow_server, champion, monkeypatch, tmp_path
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    evil = tmp_path / "python_model.pkl"
    evil.write_bytes(champion["evil"])
    client = MlflowClient(tracking_uri=sqlite_checkpoint.url)
    # The artifact repository raises requests' HTTPError (not an MlflowException) with our body.
    with pytest.raises(requests.exceptions.HTTPError, match=r"403 Client Error.*PERMISSION_DENIED.*immutable"):
        client.log_artifact(champion["run2"], str(evil), artifact_path="model")
    unchanged(mlflow_server.url, champion)


# -- the legitimate paths next to them ----------------------------------------------------


def test_a_runs_other_files_and_new_models_pass_through_checkpoint(sqlite_checkpoint, mlflow_server, champion, tmp_path):
    base, url = sqlite_checkpoint.url, mlflow_server.url
    plot = tmp_path / "plot.txt"
    plot.write_text("a run's plot")
    client = MlflowClient(tracking_uri=base)
    client.log_artifact(champion["run2"], str(plot))  # next to a registered model in the same run: passes
    assert file_bytes(url, champion["path2"].rsplit("/", 1)[0] + "/plot.txt") == b"a run's plot"
    fresh = client.create_run(client.get_experiment_by_name("gate-files").experiment_id).info.run_id
    client.log_artifact(fresh, str(plot), artifact_path="figures")
    assert [f.path for f in MlflowClient(tracking_uri=url).list_artifacts(fresh, "figures")] == ["figures/plot.txt"]
    upload = requests.post(
        f"{base}/ajax-api/2.0/mlflow/upload-artifact", params={"run_uuid": fresh, "path": "notes.txt"}, data=b"notes", timeout=30
    )
    assert upload.status_code == 200, upload.text
    # A new model logged and registered through Checkpoint (not a protected model): its files
    # go up before registration, so they pass; once registered they are immutable.
    name = unique("fresh")
    version, run_id = log_version(base, name, 5.0)
    assert predictions(url, f"models:/{name}/{version}") == [5.0, 5.0]
    after = requests.put(f"{base}{ART}/{stored_path(url, name, version)}/python_model.pkl", data=b"x", timeout=30)
    refused(after, f"registered model '{name}' version {version}")


def test_reads_pay_no_lookup_and_passing_writes_pay_a_small_one(sqlite_checkpoint, mlflow_server, champion):
    """GETs never consult the registry; a passing PUT costs the lookup (printed, for the report)."""
    base = sqlite_checkpoint.url
    registry = services(sqlite_checkpoint.app).registry
    calls = []
    original = registry._call_path

    def counting(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    registry._call_path = counting
    try:
        got = requests.get(f"{base}{ART}/{champion['path1']}/MLmodel", timeout=30)
        assert got.status_code == 200 and b"python_function" in got.content
        assert calls == []
        run_dir = champion["path2"].rsplit("/", 1)[0]
        session = requests.Session()
        timings = {}
        for label, origin in (("direct", mlflow_server.url), ("checkpoint", base)):
            samples = []
            for i in range(15):
                started = time.perf_counter()
                answer = session.put(f"{origin}{ART}/{run_dir}/plots/p{i}.txt", data=b"x" * 2048, timeout=30)
                samples.append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
            timings[label] = sorted(samples)[len(samples) // 2] * 1000
        workflow = services(sqlite_checkpoint.app).workflow
        lookups = []
        for i in range(15):
            started = time.perf_counter()
            assert workflow.artifact_refusal(ArtifactWrite("write", path=f"{run_dir}/plots/p{i}.txt")) is None
            lookups.append(time.perf_counter() - started)
        timings["lookup"] = sorted(lookups)[len(lookups) // 2] * 1000
        print(
            f"artifact PUT p50: direct {timings['direct']:.1f} ms, through Checkpoint {timings['checkpoint']:.1f} ms, "
            f"of which the lookup {timings['lookup']:.1f} ms; "
            f"registry calls per passing PUT: {len(calls) / 30:.1f} ({sorted(set(calls))})"
        )
        assert 0 < len(calls) / 30 <= 4
    finally:
        registry._call_path = original


# -- basic-auth: an EDIT-only author swaps her approved version's weights ---------------------


def test_edit_user_cannot_swap_the_weights_of_her_approved_version(auth_mlflow, sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    app = create_app(mlflow_mode(auth_mlflow, sqlite_url, tmp_path, background=False))
    with served(app) as base:
        name = unique("fraud")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        MlflowClient(tracking_uri=auth_mlflow.url).create_registered_model(name)  # alice gets EDIT, bob MANAGE
        grant(auth_mlflow.url, "alice", name, "EDIT")
        grant(auth_mlflow.url, "bob", name, "MANAGE")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["alice"])
        version, _ = log_version(auth_mlflow.url, name, 1.0)  # alice logs and registers her model (her run)
        with pytest.raises(RestException, match=r"promote request #(\d+)") as asked:
            MlflowClient(tracking_uri=base).set_registered_model_alias(name, "champion", version)
        request_id = int(re.search(r"promote request #(\d+)", str(asked.value)).group(1))
        done = requests.post(
            f"{base}/checkpoint/api/v1/requests/{request_id}/reviews",
            json={"verdict": "approve"},
            auth=("bob", PASSWORDS["bob"]),
            timeout=30,
        ).json()
        assert done["state"] == "applied", done
        assert done["challenger"]["digest"] and re.fullmatch(r"[0-9a-f]{64}", done["challenger"]["digest"])

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        evil = EVIL
        path = stored_path(auth_mlflow.url, name, version)
        alice = ("alice", PASSWORDS["alice"])
        # MLflow itself would let her: she owns the run's experiment (the gap the issue found).
        probe = requests.put(f"{auth_mlflow.url}{ART}/{path.rsplit('/', 1)[0]}/probe.txt", data=b"x", auth=alice, timeout=30)
        assert probe.status_code == 200, probe.text
        swap = requests.put(f"{base}{ART}/{path}/python_model.pkl", data=evil, auth=alice, timeout=30)
        refused(swap, f"registered model '{name}' version {version}", "immutable")
        anonymous = requests.put(f"{base}{ART}/{path}/python_model.pkl", data=evil, timeout=30)
        assert anonymous.status_code == 401 and name not in anonymous.text  # learns nothing
        assert predictions(auth_mlflow.url, f"models:/{name}@champion") == [1.0, 1.0]


# -- the digest bound to the reviews ------------------------------------------------------------


def ask(base: str, name: str, version: str) -> int:
    """alice's pipeline moves champion through Checkpoint: a request opens."""
    with pytest.raises(RestException) as asked:
        MlflowClient(tracking_uri=base).set_registered_model_alias(name, "champion", version)
    return int(re.search(r"promote request #(\d+)", str(asked.value)).group(1))


def api(base: str, method: str, path: str, user: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{base}/checkpoint/api/v1{path}", auth=(user, "x"), timeout=30, **kwargs)


def overwrite_directly(mlflow_url: str, path: str, data: bytes) -> None:
    """What an admin with storage access does: write straight to MLflow's port, past Checkpoint."""
    answer = requests.put(f"{mlflow_url}{ART}/{path}/python_model.pkl", data=data, timeout=30)
    assert answer.status_code == 200, answer.text


@pytest.fixture
def files_model(mlflow_server, monkeypatch) -> dict:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "x")
    url = mlflow_server.url
    name = unique("files")
    v1, _ = log_version(url, name, 1.0)
    v2, _ = log_version(url, name, 2.0)
    MlflowClient(tracking_uri=url).set_registered_model_alias(name, "champion", v1)
    return {
        "name": name,
        "v1": v1,
        "v2": v2,
        "evil": EVIL,
        "path1": stored_path(url, name, v1),
        "path2": stored_path(url, name, v2),
    }


def test_challenger_files_changed_between_review_and_apply_dismiss_the_approvals(gate, mlflow_server, files_model):
    base, url, name = gate.url, mlflow_server.url, files_model["name"]
    request_id = ask(base, name, files_model["v2"])
    opened = api(base, "GET", f"/requests/{request_id}", "bob").json()
    first = opened["challenger"]["digest"]
    assert re.fullmatch(r"[0-9a-f]{64}", first) and opened["challenger"]["digest_partial"] is False
    assert opened["champion"]["digest"] and opened["champion"]["digest"] != first
    page = requests.get(f"{base}/checkpoint/requests/{request_id}", auth=("bob", "x"), timeout=30).text
    assert first[:12] in page and f'title="{first}"' in page  # short form, full on hover
    assert "Moved since the request was opened" not in page  # nothing moved: the digests are not the identity

    for reviewer in ("bob", "dave"):  # two approvals; the required tag check still fails, so it waits
        body = api(base, "POST", f"/requests/{request_id}/reviews", reviewer, json={"verdict": "approve"}).json()
        assert body["state"] == "open", body
    assert [r["digest"] for r in body["reviews"]] == [first, first]

    overwrite_directly(url, files_model["path2"], files_model["evil"])
    MlflowClient(tracking_uri=url).set_model_version_tag(name, files_model["v2"], "qa", "passed")
    after = api(base, "POST", f"/requests/{request_id}/checks", "bob").json()  # the check passes: apply runs
    print("after the files changed:", after["state"], after["state_reason"])
    assert after["state"] == "open"
    assert "challenger's files changed since the reviews" in after["state_reason"]
    assert after["approvals"]["count"] == 0 and all(r["dismissed"] for r in after["reviews"])
    assert after["challenger"]["digest"] != first
    kinds = [e["kind"] for e in after["events"]]
    assert kinds[-3:] == ["approvals_dismissed", "snapshots_refreshed", "reopened"], kinds
    assert MlflowClient(tracking_uri=url).get_model_version_by_alias(name, "champion").version == files_model["v1"]


def test_a_review_on_changed_files_is_refused_and_earlier_approvals_dismissed(gate, mlflow_server, files_model):
    base, url, name = gate.url, mlflow_server.url, files_model["name"]
    request_id = ask(base, name, files_model["v2"])
    first = api(base, "GET", f"/requests/{request_id}", "bob").json()["challenger"]["digest"]
    assert api(base, "POST", f"/requests/{request_id}/reviews", "bob", json={"verdict": "approve"}).status_code == 200
    overwrite_directly(url, files_model["path2"], files_model["evil"])
    late = api(base, "POST", f"/requests/{request_id}/reviews", "dave", json={"verdict": "approve"})
    assert late.status_code == 409, late.text
    assert "challenger's files changed" in late.json()["message"]
    now = api(base, "GET", f"/requests/{request_id}", "bob").json()
    assert now["approvals"]["count"] == 0 and now["challenger"]["digest"] not in (None, first)
    assert [r["reviewer"] for r in now["reviews"]] == ["bob"]  # dave's review was not recorded


def test_champion_files_changed_outside_are_recorded(gate, mlflow_server, files_model):
    base, url, name = gate.url, mlflow_server.url, files_model["name"]
    request_id = ask(base, name, files_model["v2"])
    seen = api(base, "GET", f"/requests/{request_id}", "bob").json()["champion"]["digest"]
    for reviewer in ("bob", "dave"):
        api(base, "POST", f"/requests/{request_id}/reviews", reviewer, json={"verdict": "approve"})
    overwrite_directly(url, files_model["path1"], files_model["evil"])  # the serving champion, changed outside
    MlflowClient(tracking_uri=url).set_model_version_tag(name, files_model["v2"], "qa", "passed")
    after = api(base, "POST", f"/requests/{request_id}/checks", "bob").json()
    assert after["state"] == "open" and "champion's files changed outside Checkpoint" in after["state_reason"]
    assert after["champion"]["digest"] != seen
    audit = services(gate.app).store
    outside = [e for e in audit.audit_rows() if e["kind"] == "outside_change" and e["data"].get("files")]
    assert len(outside) == 1 and outside[0]["model_name"] == name
    assert outside[0]["data"]["digest_before"] == seen and outside[0]["data"]["version"] == files_model["v1"]


# -- the digest (content.py's pure helpers are in tests/unit/review/test_content.py) -------------------


def test_the_digest_budget_makes_it_partial_never_silent(mlflow_server, champion):
    registry = Registry(mlflow_server.url)
    version = registry.version(champion["name"], champion["v1"])
    full = content.digest(registry, version, 64 * 1024 * 1024)
    again = content.digest(registry, version, 64 * 1024 * 1024)
    listing_only = content.digest(registry, version, 0)
    assert full.value == again.value and not full.partial and full.files >= 4
    assert listing_only.partial and listing_only.value != full.value  # python_model.pkl counted by name and size only
    assert listing_only.hashed_bytes < full.hashed_bytes
    missing = content.digest(registry, replace(version, version="999"), 1024)
    assert missing.value is None and "could not read" in missing.error


def test_champion_files_changed_since_its_promotion_are_noticed_at_the_next_opening(
    sqlite_checkpoint, mlflow_server, files_model
):
    base, url, name = sqlite_checkpoint.url, mlflow_server.url, files_model["name"]
    first = ask(base, name, files_model["v2"])  # the default rule: one approval
    applied = api(base, "POST", f"/requests/{first}/reviews", "bob", json={"verdict": "approve"}).json()
    assert applied["state"] == "applied", applied
    overwrite_directly(url, files_model["path2"], files_model["evil"])  # the new champion, changed outside
    second = ask(base, name, files_model["v1"])
    opened = api(base, "GET", f"/requests/{second}", "bob").json()
    assert opened["champion"]["version"] == files_model["v2"]
    assert opened["champion"]["digest"] != applied["challenger"]["digest"]
    store = services(sqlite_checkpoint.app).store
    outside = [e for e in store.audit_rows() if e["kind"] == "outside_change" and e["model_name"] == name]
    assert [e["data"].get("files", False) for e in outside] == [False, True], outside  # the alias set on MLflow, then the files
    assert outside[1]["data"]["digest_before"] == applied["challenger"]["digest"]
    assert outside[1]["data"]["digest_after"] == opened["champion"]["digest"]
    history = requests.get(f"{base}/checkpoint/models/{name}/history", auth=("bob", "x"), timeout=30)
    assert history.status_code == 200 and f"the files of v{files_model['v2']} (alias:champion) changed" in history.text
