"""Where a registered version's files live and whether an artifact write reaches them, without
MLflow: path decoding and resolution, places and their overlap, URIs, the workspace root, and the
artifact calls' own spelling of where they write."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from checkpoint.registry import RegistryError
from checkpoint.review import content
from checkpoint.review.content import ArtifactWrite, Place


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("1/models/m-1/artifacts", ("1", "models", "m-1", "artifacts")),
        ("1//models/./m-1/", ("1", "models", "m-1")),
        ("1/x/../models", ("1", "models")),
        ("1%2Fmodels", ("1", "models")),
        ("1%252Fmodels%25252Fm-1", ("1", "models", "m-1")),  # decoded until it stops changing, as MLflow does
        ("../../etc", ("etc",)),
        ("", ()),
    ],
)
def test_split_path_resolves_what_mlflow_and_the_store_would(path, parts):
    assert content.split_path(path) == parts


def test_split_path_refuses_endless_encoding():
    with pytest.raises(content.ContentError, match="more than ten times"):
        content.split_path("%" + "25" * 12 + "41")


@pytest.mark.parametrize(
    ("uri", "place"),
    [
        ("mlflow-artifacts:/1/models/m-1/artifacts", "mlflow-artifacts:/1/models/m-1/artifacts"),
        ("mlflow-artifacts://host:5000/1/r/artifacts/model", "mlflow-artifacts:/1/r/artifacts/model"),
        ("http://host/api/2.0/mlflow-artifacts/artifacts/1/r", "mlflow-artifacts:/1/r"),
        ("s3://bucket/root/1/r/artifacts", "s3://bucket/root/1/r/artifacts"),
        ("/var/mlruns/1/r/artifacts", "file:///var/mlruns/1/r/artifacts"),
    ],
)
def test_place_of_uri(uri, place):
    assert str(content.place_of_uri(uri)) == place


def test_places_overlap_inside_and_above_never_beside():
    model = content.Place(content.SERVED, ("1", "r", "artifacts", "model"))
    assert model.overlaps(content.Place(content.SERVED, ("1", "r", "artifacts", "model", "python_model.pkl")))
    assert model.overlaps(content.Place(content.SERVED, ("1", "r")))  # a delete above it
    assert model.overlaps(content.Place(content.SERVED, ()))
    assert not model.overlaps(content.Place(content.SERVED, ("1", "r", "artifacts", "plot.png")))
    assert not model.overlaps(content.Place(content.SERVED, ("1", "r", "artifacts", "model2")))
    assert not model.overlaps(content.Place("s3://bucket", ("1", "r", "artifacts", "model")))


@pytest.mark.parametrize(
    ("path", "decoded"),
    [("a%2Fb", "a/b"), ("a%252Fb", "a/b"), ("a%25252Fb", "a/b"), ("plain", "plain"), ("%41", "A")],
)
def test_decode_until_nothing_changes(path, decoded):
    assert content.decode(path) == decoded


def test_split_path_refuses_too_many_segments():
    content.split_path("/".join(["x"] * content.MAX_SEGMENTS))
    with pytest.raises(content.ContentError, match=f"more than {content.MAX_SEGMENTS} segments"):
        content.split_path("/".join(["x"] * (content.MAX_SEGMENTS + 1)))


@pytest.mark.parametrize("uri", ["runs:/abc/model", "models:/fraud/1", "RUNS:/abc"])
def test_indirections_have_no_place_of_their_own(uri):
    assert content.place_of_uri(uri) is None


def test_a_place_and_its_children():
    place = Place(content.SERVED, ("1", "r", "artifacts"))
    child = place.child("model/../model/./MLmodel")
    assert child == Place(content.SERVED, ("1", "r", "artifacts", "model", "MLmodel"))
    assert child.path == "1/r/artifacts/model/MLmodel"
    assert str(Place("s3://bucket", ("a", "b"))) == "s3://bucket/a/b"


@pytest.mark.parametrize(
    ("path", "workspace", "served"),
    [
        ("1/r/artifacts/x", "", "1/r/artifacts/x"),
        ("1/r/artifacts/x", "team-b", "workspaces/team-b/1/r/artifacts/x"),
        ("/1/r", "team-b", "workspaces/team-b/1/r"),
        ("workspaces/team-b/1/r", "team-b", "workspaces/team-b/1/r"),
        ("workspaces%2Fteam-a/1", "team-b", "workspaces%2Fteam-a/1"),  # MLflow itself refuses another's root
    ],
)
def test_served_path_roots_a_workspace(path, workspace, served):
    assert content.served_path(path, workspace) == served


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("run_uuid=abc&path=model/x.pkl", ArtifactWrite("write", path="model/x.pkl", run_id="abc")),
        ("path=a&path=b&run_uuid=r1&run_uuid=r2", ArtifactWrite("write", path="a", run_id="r1")),  # Flask reads the first
        ("path=&run_uuid=", ArtifactWrite("write")),
        ("", ArtifactWrite("write")),
    ],
)
def test_an_upload_names_its_place_in_the_query(query, expected):
    assert ArtifactWrite.from_query("write", query) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"run_id": "r", "path": "m/x"}, ArtifactWrite("write", path="m/x", run_id="r")),
        ({"runId": "r", "path": "m/x"}, ArtifactWrite("write", path="m/x", run_id="r")),
        ({"modelId": "m-1", "path": "x"}, ArtifactWrite("write", path="x", model_id="m-1")),
        ({"run_id": 7, "path": ["x"]}, ArtifactWrite("write")),  # not text: nothing named
    ],
)
def test_a_presigned_upload_names_its_place_in_the_body(body, expected):
    assert ArtifactWrite.from_body("write", body) == expected


@dataclass
class Runs:
    """The two registry reads placing a write needs: a run's and a logged model's artifact URI."""

    runs: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    def run(self, run_id: str) -> dict:
        if run_id not in self.runs:
            raise RegistryError(404, "RESOURCE_DOES_NOT_EXIST", f"Run '{run_id}' not found")
        return {"info": {"artifact_uri": self.runs[run_id]}}

    def logged_model(self, model_id: str) -> dict:
        if model_id not in self.models:
            raise RegistryError(400, "INVALID_PARAMETER_VALUE", "bad id")
        return {"artifact_uri": self.models[model_id]}


REGISTRY = Runs(runs={"r1": "mlflow-artifacts:/1/r1/artifacts"}, models={"m-1": "s3://bucket/1/models/m-1/artifacts"})


@pytest.mark.parametrize(
    ("write", "place"),
    [
        (ArtifactWrite("write", path="1/r1/artifacts/model/x.pkl"), "mlflow-artifacts:/1/r1/artifacts/model/x.pkl"),
        (ArtifactWrite("write", path="1/r1/x", workspace="team-b"), "mlflow-artifacts:/workspaces/team-b/1/r1/x"),
        (ArtifactWrite("write", path="model/../model/x.pkl", run_id="r1"), "mlflow-artifacts:/1/r1/artifacts/model/x.pkl"),
        (ArtifactWrite("write", path="x", model_id="m-1"), "s3://bucket/1/models/m-1/artifacts/x"),
        (ArtifactWrite("write", path="x", run_id="missing"), None),  # MLflow refuses the call itself
        (ArtifactWrite("write", path="x", model_id="m-2"), None),
    ],
)
def test_where_a_write_lands(write, place):
    found = write.place(REGISTRY)
    assert (None if found is None else str(found)) == place


def test_a_registry_failure_while_placing_a_write_is_not_swallowed():
    class Down(Runs):
        def run(self, run_id: str) -> dict:
            raise RegistryError(503, "TEMPORARILY_UNAVAILABLE", "down")

    with pytest.raises(RegistryError):
        ArtifactWrite("write", path="x", run_id="r1").place(Down())


LOGGED = "m-" + "1" * 32


@pytest.mark.parametrize(
    ("uri", "place"),
    [
        ("runs:/r1/model", "mlflow-artifacts:/1/r1/artifacts/model"),
        (f"models:/{LOGGED}", "mlflow-artifacts:/1/models/m-1/artifacts"),
        ("models:/fraud/3", None),  # a registered version: no place of its own
        ("s3://bucket/x", "s3://bucket/x"),
    ],
)
def test_resolve_uri_follows_runs_and_logged_models(uri, place):
    registry = Runs(runs=REGISTRY.runs, models={LOGGED: "mlflow-artifacts:/1/models/m-1/artifacts"})
    found = content.resolve_uri(registry, uri)
    assert (None if found is None else str(found)) == place
