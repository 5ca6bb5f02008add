"""The real MLflow client and UI through Checkpoint (gunicorn) in front of a real MLflow server.

The client only ever knows Checkpoint's address, ``mlflow-artifacts:`` URIs resolve
against it, and gunicorn's access log shows the calls and the bytes that went through.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from tests.support.proxy import CheckpointProcess, body_bytes, body_bytes_grew, checkpoint_process, pattern
from tests.support.waiting import poll

BIG = 100 * 1024 * 1024 + 12_345  # not a multiple of any chunk size on the way


@pytest.fixture(scope="module")
def checkpoint(mlflow_server, tmp_path_factory) -> Iterator[CheckpointProcess]:
    """`checkpoint serve` in front of the session's MLflow, with an access log to read."""
    with checkpoint_process(mlflow_server.url, tmp_path_factory.mktemp("proxy-mlflow")) as served:
        yield served


@pytest.fixture(scope="module")
def copying(mlflow_server, tmp_path_factory) -> Iterator[CheckpointProcess]:
    """The same, with zero-copy bodies off (CHECKPOINT_ZERO_COPY=off): the copy loops."""
    with checkpoint_process(
        mlflow_server.url, tmp_path_factory.mktemp("proxy-mlflow-copy"), CHECKPOINT_ZERO_COPY="off"
    ) as served:
        yield served


@pytest.fixture
def client(checkpoint, monkeypatch) -> MlflowClient:
    """An MLflow client that knows Checkpoint's address and nothing else."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", checkpoint.url)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # the fluent API (mlflow.register_model) reads the process-wide URI; monkeypatch restores it
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", checkpoint.url)
    monkeypatch.setattr(mlflow.tracking._model_registry.utils, "_registry_uri", None)
    assert mlflow.get_tracking_uri() == checkpoint.url
    return MlflowClient(tracking_uri=checkpoint.url, registry_uri=checkpoint.url)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_path(run, relative: str) -> str:
    """The HTTP path of a run's artifact under MLflow's artifact proxy."""
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    return (
        "/api/2.0/mlflow-artifacts/artifacts/" + run.info.artifact_uri[len("mlflow-artifacts:/") :].strip("/") + ("/" + relative)
    )


def access(checkpoint: CheckpointProcess, method: str, path: str) -> list[tuple[int, str]]:
    """(status, bytes sent) of each access-log line (one JSON object, checkpoint/logs.py) for ``method path``."""
    found = []
    for line in checkpoint.access_lines(f'"{method} {path} '):
        entry = json.loads(line)
        if (entry["method"], entry["path"]) == (method, path):
            found.append((entry["status"], str(entry["bytes"])))
    return found


# -- tracking ---------------------------------------------------------------------------


def test_experiment_run_params_metrics_batch_tags(client):
    name = unique("exp")
    experiment_id = client.create_experiment(name, tags={"owner": "ml"})
    assert client.get_experiment_by_name(name).experiment_id == experiment_id

    run = client.create_run(experiment_id, tags={"team": "ml"}, run_name="first")
    run_id = run.info.run_id
    client.log_param(run_id, "alpha", "0.5")
    for step in range(5):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step, timestamp=1_700_000_000_000 + step)
    client.log_batch(
        run_id,
        metrics=[Metric("acc", 0.9, 1_700_000_000_000, 0), Metric("acc", 0.95, 1_700_000_000_001, 1)],
        params=[Param("layers", "3"), Param("optimizer", "adam")],
        tags=[RunTag("stage", "train"), RunTag("note", "ünïcödé ✓")],
    )
    client.set_tag(run_id, "reviewed", "yes")
    client.set_terminated(run_id)

    got = client.get_run(run_id)
    assert got.data.params == {"alpha": "0.5", "layers": "3", "optimizer": "adam"}
    assert got.data.metrics == {"loss": pytest.approx(0.2), "acc": pytest.approx(0.95)}
    assert {k: got.data.tags[k] for k in ("team", "stage", "note", "reviewed")} == {
        "team": "ml",
        "stage": "train",
        "note": "ünïcödé ✓",
        "reviewed": "yes",
    }
    assert got.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, pytest.approx(1.0 / (s + 1))) for s in range(5)]


def test_search_runs_pages_with_tokens(client):
    experiment_id = client.create_experiment(unique("pages"))
    run_ids = []
    for i in range(7):
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "i", i)
        run_ids.append(run.info.run_id)

    pages, token = [], None
    for _ in range(10):
        page = client.search_runs([experiment_id], max_results=3, order_by=["metrics.i ASC"], page_token=token)
        pages.append([r.info.run_id for r in page])
        token = page.token
        if not token:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [rid for page in pages for rid in page] == run_ids

    high = client.search_runs([experiment_id], filter_string="metrics.i >= 4", max_results=100)
    assert sorted(r.info.run_id for r in high) == sorted(run_ids[4:])


# -- artifacts --------------------------------------------------------------------------


SMALL_FILES = {
    "notes.txt": b"hello through Checkpoint\n",
    "empty.bin": b"",
    "weights.bin": pattern(300_001, seed=1),
    "report.html": b'<!doctype html><html><head><script src="http://127.0.0.1:1/x.js"></script></head>'
    b"<body>untouched</body></html>",
    "dir/a.json": b'{"a": 1}',
    "dir/nested/b.bin": pattern(70_000, seed=2),
    "dir/nested/deeper/c.txt": b"c" * 65_536,
}


def test_small_artifacts_and_a_directory_round_trip(client, checkpoint, tmp_path):
    experiment_id = client.create_experiment(unique("artifacts"))
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    source = tmp_path / "source"
    for relative, data in SMALL_FILES.items():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_bytes(data)

    for single in ("notes.txt", "empty.bin", "weights.bin", "report.html"):
        client.log_artifact(run_id, str(source / single))
    client.log_artifacts(run_id, str(source / "dir"), artifact_path="dir")

    assert sorted(f.path for f in client.list_artifacts(run_id)) == [
        "dir",
        "empty.bin",
        "notes.txt",
        "report.html",
        "weights.bin",
    ]
    assert {f.path: f.file_size for f in client.list_artifacts(run_id, "dir/nested")} == {
        "dir/nested/b.bin": 70_000,
        "dir/nested/deeper": None,
    }
    target = tmp_path / "downloaded"
    target.mkdir()
    client.download_artifacts(run_id, "", str(target))
    for relative, data in SMALL_FILES.items():
        assert (target / relative).read_bytes() == data, relative

    # Every upload and download went through Checkpoint's gunicorn.
    for relative in SMALL_FILES:
        assert any(status == 200 for status, _ in access(checkpoint, "PUT", artifact_path(run, relative))), relative
        assert any(status == 200 for status, _ in access(checkpoint, "GET", artifact_path(run, relative))), relative

    # The UI's way to an artifact: the HTML arrives as MLflow stored it.
    page = requests.get(
        f"{checkpoint.url}/get-artifact",
        params={"path": "report.html", "run_uuid": run_id},
        headers={"Accept": "text/html"},
        timeout=30,
    )
    assert page.status_code == 200
    assert page.content == SMALL_FILES["report.html"]


def _write_big(path: Path, size: int) -> str:
    """``size`` bytes: a 1 MiB random block, each copy stamped with its index."""
    block = bytearray(pattern(1 << 20, seed=42))
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        written, index = 0, 0
        while written < size:
            block[:8] = index.to_bytes(8, "big")
            piece = bytes(block[: min(len(block), size - written)])
            handle.write(piece)
            digest.update(piece)
            written += len(piece)
            index += 1
    return digest.hexdigest()


@pytest.mark.parametrize("server", ["checkpoint", "copying"], ids=["splice", "copy"])
def test_large_artifact_round_trip(request, server, mlflow_server, tmp_path, monkeypatch):
    checkpoint = request.getfixturevalue(server)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(tracking_uri=checkpoint.url)
    before = body_bytes(checkpoint.url)
    experiment_id = client.create_experiment(unique("big"))
    run = client.create_run(experiment_id)
    source = tmp_path / "big.bin"
    expected = _write_big(source, BIG)

    started = time.monotonic()
    client.log_artifact(run.info.run_id, str(source))
    uploaded = time.monotonic() - started
    stored = mlflow_server.root / "mlartifacts" / artifact_path(run, "big.bin").split("/artifacts/", 1)[1]
    assert stored.stat().st_size == BIG
    assert file_sha256(stored) == expected
    source.unlink()

    started = time.monotonic()
    local = Path(client.download_artifacts(run.info.run_id, "big.bin", str(tmp_path)))
    downloaded = time.monotonic() - started
    assert local.stat().st_size == BIG
    assert file_sha256(local) == expected

    assert [status for status, _ in access(checkpoint, "PUT", artifact_path(run, "big.bin"))] == [200]
    gets = access(checkpoint, "GET", artifact_path(run, "big.bin"))
    assert sum(int(sent) for status, sent in gets if status in (200, 206)) >= BIG, gets
    assert uploaded < 60
    assert downloaded < 60
    path = "splice" if server == "checkpoint" else "copy"
    moved = poll(lambda: body_bytes_grew(before, body_bytes(checkpoint.url)), timeout=5, until=lambda g: len(g) == 2)
    assert moved == {("upload", path): BIG, ("download", path): BIG}
    # Each worker said at start which path it uses, and why.
    said = (
        "artifact bodies: zero-copy path (os.splice"
        if path == "splice"
        else "artifact bodies: copy path (CHECKPOINT_ZERO_COPY=off"
    )
    assert said in checkpoint.log_path.read_text()


# -- model registry ---------------------------------------------------------------------


def test_model_registration_versions_and_tags(client, tmp_path):
    experiment_id = client.create_experiment(unique("registry"))
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    client.log_artifacts(run_id, str(model_dir), artifact_path="model")

    name = unique("model")
    created = client.create_registered_model(name, tags={"domain": "fraud"}, description="first")
    assert created.name == name
    v1 = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run_id, tags={"k": "v"})
    assert v1.version == "1"

    registered = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert registered.name == name
    assert registered.version == "2"

    other = unique("model")
    via_register = mlflow.register_model(f"runs:/{run_id}/model", other)
    assert (via_register.name, via_register.version) == (other, "1")

    client.set_model_version_tag(name, "1", "reviewer", "alice")
    client.set_model_version_tag(name, "2", "reviewer", "bob")
    client.delete_model_version_tag(name, "1", "k")
    client.set_registered_model_tag(name, "team", "risk")
    client.update_model_version(name, "2", description="second")

    assert client.get_model_version(name, "1").tags == {"reviewer": "alice"}
    assert client.get_model_version(name, "2").tags == {"reviewer": "bob"}
    assert client.get_model_version(name, "2").description == "second"
    model = client.get_registered_model(name)
    assert model.tags == {"domain": "fraud", "team": "risk"}
    assert model.description == "first"
    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    assert {v.run_id for v in versions} == {run_id}


def test_registered_model_search_pages(client):
    prefix = unique("paged")
    names = [f"{prefix}-{i}" for i in range(5)]
    for name in names:
        client.create_registered_model(name)

    pages, token = [], None
    for _ in range(10):
        page = client.search_registered_models(
            filter_string=f"name LIKE '{prefix}%'", max_results=2, order_by=["name ASC"], page_token=token
        )
        pages.append([m.name for m in page])
        token = page.token
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [n for page in pages for n in page] == names


# -- the UI -----------------------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.urls.append(found["src"])
        if tag == "link" and found.get("href"):
            self.urls.append(found["href"])


def assets_of(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


def test_ui_index_and_its_assets(checkpoint, mlflow_server):
    direct = requests.get(f"{mlflow_server.url}/", timeout=30)
    through = requests.get(f"{checkpoint.url}/", headers={"Accept": "text/html"}, timeout=30)
    assert through.status_code == 200
    assert through.headers["Content-Type"].startswith("text/html")
    assert '<div id="root"' in through.text
    assert "<title>MLflow</title>" in through.text

    mlflow_assets = assets_of(direct.text)
    assert any(url.endswith(".js") for url in mlflow_assets)
    assert any(url.endswith(".css") for url in mlflow_assets)
    # Checkpoint may add its own script to the page, but every MLflow asset stays.
    assert set(mlflow_assets) <= set(assets_of(through.text))

    session = requests.Session()
    for url in mlflow_assets:
        assert not url.startswith(("http:", "https:", "//")), url
        path = "/" + url.lstrip("./")
        mine = session.get(f"{checkpoint.url}{path}", timeout=60)
        theirs = requests.get(f"{mlflow_server.url}{path}", timeout=60)
        assert mine.status_code == 200, path
        assert mine.content == theirs.content, path
        assert mine.headers.get("Content-Type") == theirs.headers.get("Content-Type"), path

    main_js = next(url for url in mlflow_assets if url.endswith(".js"))
    first = session.get(f"{checkpoint.url}/{main_js}", timeout=60)
    again = session.get(f"{checkpoint.url}/{main_js}", headers={"If-None-Match": first.headers["ETag"]}, timeout=60)
    assert again.status_code == 304
    assert again.content == b""


def test_mlflow_redirect_points_back_at_checkpoint(checkpoint, mlflow_server):
    """MLflow answers an interior ``//`` with a 308; the client must be sent to Checkpoint."""
    direct = requests.get(
        f"{mlflow_server.url}/api/2.0/mlflow//experiments/search?max_results=1", allow_redirects=False, timeout=30
    )
    assert direct.status_code == 308, "MLflow no longer redirects here; pick another redirecting path"
    answer = requests.get(f"{checkpoint.url}/api/2.0/mlflow//experiments/search?max_results=1", allow_redirects=False, timeout=30)
    assert answer.status_code == 308
    location = answer.headers["Location"]
    assert not location.startswith(mlflow_server.url)
    assert location.startswith((checkpoint.url + "/", "/")), location
    followed = requests.get(f"{checkpoint.url}/api/2.0/mlflow//experiments/search?max_results=1", timeout=30)
    assert followed.status_code == 200
    assert followed.url.startswith(checkpoint.url)


def test_a_call_after_an_upload_mlflow_failed_is_not_lost(checkpoint, mlflow_server):
    """MLflow answers an upload it cannot store (a file over a folder) with a 500 before reading
    the body, and uvicorn then drops that connection silently. The next call must not inherit it
    from the pool: it failed as a 502 in 10 of 20 tries before the proxy stopped reusing it."""
    direct = MlflowClient(tracking_uri=mlflow_server.url)
    experiment = direct.create_experiment(f"reuse-{uuid.uuid4().hex[:8]}")
    run_id = direct.create_run(experiment).info.run_id
    direct.log_text(run_id, "weights", "model/model.pkl")
    name = f"reuse-{uuid.uuid4().hex[:8]}"
    direct.create_registered_model(name)
    folder = f"{checkpoint.url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/model"
    answers = []
    for i in range(20):
        with requests.Session() as session:  # a fresh client connection each time, as separate callers
            failed = session.put(folder, data=b"over a folder", timeout=30)
            assert failed.status_code == 500, failed.text[:200]  # MLflow's own answer, passed through
        update = requests.patch(
            f"{checkpoint.url}/api/2.0/mlflow/registered-models/update", json={"name": name, "description": f"d{i}"}, timeout=30
        )
        answers.append(update.status_code)
    assert answers == [200] * 20
    assert direct.get_registered_model(name).description == "d19"
