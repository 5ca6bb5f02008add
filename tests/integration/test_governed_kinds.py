"""Every governed kind of change, through the real MLflow client and by raw HTTP on
``/api/2.0`` and ``/ajax-api/2.0``, against the real MLflow server.

A governed call is refused with 403: the client and ``/api`` get a promote request, which
``bob`` approves through the JSON API, after which the change is true in MLflow and the
request is ``applied``; ``/ajax-api`` (MLflow's UI) gets a pointer to the pre-filled form and
no request is created. Its ungoverned twin passes straight through and happens.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from checkpoint import create_app
from checkpoint.services import services
from tests.support.compat import mlflow_major
from tests.support.databases import migrated_sqlite
from tests.support.governed import api, make_model, unique
from tests.support.serving import served

ALIAS = "registered-models/alias"
TRANSITION = "model-versions/transition-stage"


@dataclass
class Gate:
    """Checkpoint in front of the session's MLflow, seen the three ways a change can arrive."""

    url: str
    app: object

    def requests_opened(self) -> int:
        return services(self.app).store.count()

    def send(self, prefix: str, method: str, endpoint: str, body: dict, user: str = "alice") -> requests.Response:
        return requests.request(method, f"{self.url}/{prefix}/2.0/mlflow/{endpoint}", json=body, auth=(user, "x"), timeout=60)

    def governed_api(self, method: str, endpoint: str, body: dict, kind: str) -> int:
        """A raw ``/api/2.0`` call that must open a request; its id."""
        answer = self.send("api", method, endpoint, body)
        assert answer.status_code == 403, answer.text
        payload = answer.json()
        assert payload["error_code"] == "PERMISSION_DENIED" and payload["message"].startswith("Checkpoint: ")
        request_id = int(answer.headers["X-Checkpoint-Request"])
        assert payload["checkpoint"]["request_id"] == request_id
        return self.check_open(request_id, kind)

    def check_open(self, request_id: int, kind: str) -> int:
        opened = api(self.url, "GET", f"/requests/{request_id}").json()
        assert opened["state"] == "open" and opened["author"] == "alice" and opened["kind"] == kind, opened
        return request_id

    def pointer(self, method: str, endpoint: str, body: dict, kind: str) -> dict:
        """A raw ``/ajax-api/2.0`` call (the UI): 403 pointing at the form; no request. The change."""
        before = self.requests_opened()
        answer = self.send("ajax-api", method, endpoint, body)
        assert answer.status_code == 403, answer.text
        payload = answer.json()
        assert payload["error_code"] == "PERMISSION_DENIED" and payload["checkpoint"]["action"] == "new_request"
        url = payload["checkpoint"]["url"]
        assert url.startswith(f"{self.url}/checkpoint/requests/new?change="), url
        assert answer.headers["X-Checkpoint-New-Request"] == url
        assert "X-Checkpoint-Request" not in answer.headers
        token = url.split("change=", 1)[1]
        change = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        assert change == payload["checkpoint"]["change"] and change["kind"] == kind, change
        form = requests.get(url, auth=("alice", "x"), timeout=30)
        assert form.status_code == 200 and "text/html" in form.headers["Content-Type"], form.status_code
        assert self.requests_opened() == before, "a UI call must not open a request"
        return change

    def passes(self, prefix: str, method: str, endpoint: str, body: dict, status: int = 200) -> dict:
        """A raw call that is not governed: MLflow answers it (``status``), no request is opened."""
        before = self.requests_opened()
        answer = self.send(prefix, method, endpoint, body)
        assert answer.status_code == status, answer.text
        assert "X-Checkpoint-Request" not in answer.headers and "X-Checkpoint-New-Request" not in answer.headers
        assert self.requests_opened() == before
        return answer.json()

    def approve(self, request_id: int) -> dict:
        """bob approves; the one approval the default policy needs applies the change."""
        answer = api(self.url, "POST", f"/requests/{request_id}/reviews", json={"verdict": "approve"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["state"] == "applied", body
        assert "already true" not in (body["apply_result"] or ""), body["apply_result"]
        return body


def refused_by_client(call: Callable[[], object], gate: Gate, kind: str) -> int:
    """The MLflow client's call is stopped with PERMISSION_DENIED naming a new request; its id."""
    before = gate.requests_opened()
    with pytest.raises(MlflowException) as refused:
        call()
    message = str(refused.value)
    if isinstance(refused.value, RestException):
        assert refused.value.error_code == "PERMISSION_DENIED", message
    assert "PERMISSION_DENIED: Checkpoint: " in message and "needs review" in message, message
    found = re.search(r"promote request #(\d+)", message)
    assert found, message
    assert gate.requests_opened() == before + 1
    return gate.check_open(int(found.group(1)), kind)


@pytest.fixture(scope="module")
def gate(mlflow_server, tmp_path_factory) -> Iterator[Gate]:
    """Checkpoint on SQLite for the module (the kinds are not about the database; see the
    live_checkpoint test at the end for PostgreSQL)."""
    data_dir = tmp_path_factory.mktemp("kinds")
    application = create_app({"registry_url": mlflow_server.url, "database_url": migrated_sqlite(data_dir), "data_dir": data_dir})
    with served(application) as url:
        yield Gate(url, application)


def _pipeline_client(url: str, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-checked")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowClient(tracking_uri=url, registry_uri=url)


@pytest.fixture
def client(gate, monkeypatch) -> MlflowClient:
    """The unmodified MLflow client pointed at Checkpoint, as alice, without retries."""
    return _pipeline_client(gate.url, monkeypatch)


@pytest.fixture(scope="module")
def direct(mlflow_server) -> MlflowClient:
    """MLflow itself: set-up and the truth afterwards."""
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def stage(direct: MlflowClient, name: str, version: str) -> str:
    return direct.get_model_version(name, version).current_stage


def aliases(direct: MlflowClient, name: str) -> dict[str, str]:
    return dict(direct.get_registered_model(name).aliases)


def exists(direct: MlflowClient, name: str) -> bool:
    return [m.name for m in direct.search_registered_models(f"name = '{name}'")] == [name]


# -- stages ---------------------------------------------------------------------------------------


def test_transition_into_governed_stages(gate, client, direct, mlflow_server):
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.transition_model_version_stage(name, v1, "Production")

    change = gate.pointer("POST", TRANSITION, {"name": name, "version": v2, "stage": "Staging"}, "transition")
    assert change["stage"] == "Staging" and change["version"] == v2

    request_id = refused_by_client(lambda: client.transition_model_version_stage(name, v2, "Staging"), gate, "transition")
    assert stage(direct, name, v2) == "None"
    gate.approve(request_id)
    assert stage(direct, name, v2) == "Staging"

    body = {"name": name, "version": v2, "stage": "Production", "archive_existing_versions": True}
    request_id = gate.governed_api("POST", TRANSITION, body, "transition")
    assert stage(direct, name, v2) == "Staging"
    gate.approve(request_id)
    assert (stage(direct, name, v1), stage(direct, name, v2)) == ("Archived", "Production")


def test_archiving_the_production_version_is_governed_archiving_a_none_version_is_not(gate, client, direct, mlflow_server):
    name, (v1, v2, v3) = make_model(mlflow_server.url, versions=3)
    direct.transition_model_version_stage(name, v1, "Production")

    # Unremarkable versions move freely, on every channel.
    client.transition_model_version_stage(name, v2, "Archived")
    gate.passes("api", "POST", TRANSITION, {"name": name, "version": v3, "stage": "Archived"})
    assert (stage(direct, name, v2), stage(direct, name, v3)) == ("Archived", "Archived")
    gate.passes("ajax-api", "POST", TRANSITION, {"name": name, "version": v3, "stage": "None"})
    assert stage(direct, name, v3) == "None"

    # Moving the champion out of Production is governed.
    gate.pointer("POST", TRANSITION, {"name": name, "version": v1, "stage": "Archived"}, "transition")
    request_id = refused_by_client(lambda: client.transition_model_version_stage(name, v1, "Archived"), gate, "transition")
    assert stage(direct, name, v1) == "Production"
    gate.approve(request_id)
    assert stage(direct, name, v1) == "Archived"

    direct.transition_model_version_stage(name, v2, "Production")
    request_id = gate.governed_api("POST", TRANSITION, {"name": name, "version": v2, "stage": "archived"}, "transition")
    assert stage(direct, name, v2) == "Production"
    gate.approve(request_id)
    assert stage(direct, name, v2) == "Archived"


# -- aliases --------------------------------------------------------------------------------------


def test_protected_aliases_are_governed_others_pass(gate, client, direct, mlflow_server):
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.set_registered_model_alias(name, "champion", v1)

    client.set_registered_model_alias(name, "candidate", v2)
    assert aliases(direct, name)["candidate"] == v2
    gate.passes("api", "POST", ALIAS, {"name": name, "alias": "candidate", "version": v1})
    assert aliases(direct, name)["candidate"] == v1
    gate.passes("ajax-api", "POST", ALIAS, {"name": name, "alias": "candidate", "version": v2})
    assert aliases(direct, name)["candidate"] == v2

    change = gate.pointer("POST", ALIAS, {"name": name, "alias": "champion", "version": v2}, "set_alias")
    assert change["alias"] == "champion" and change["version"] == v2

    request_id = refused_by_client(lambda: client.set_registered_model_alias(name, "champion", v2), gate, "set_alias")
    assert aliases(direct, name)["champion"] == v1
    gate.approve(request_id)
    assert aliases(direct, name)["champion"] == v2

    request_id = gate.governed_api("POST", ALIAS, {"name": name, "alias": "prod-eu", "version": v1}, "set_alias")
    assert "prod-eu" not in aliases(direct, name)
    gate.approve(request_id)
    assert aliases(direct, name) == {"champion": v2, "candidate": v2, "prod-eu": v1}


def test_deleting_a_protected_alias_is_governed(gate, client, direct, mlflow_server):
    name, (v1, v2) = make_model(mlflow_server.url)
    for alias_name, version in (("champion", v1), ("prod-eu", v2), ("candidate", v2)):
        direct.set_registered_model_alias(name, alias_name, version)

    gate.passes("ajax-api", "DELETE", ALIAS, {"name": name, "alias": "candidate", "version": v2})  # the UI sends version
    assert "candidate" not in aliases(direct, name)

    gate.pointer("DELETE", ALIAS, {"name": name, "alias": "champion", "version": v1}, "delete_alias")
    request_id = refused_by_client(lambda: client.delete_registered_model_alias(name, "champion"), gate, "delete_alias")
    assert aliases(direct, name)["champion"] == v1
    gate.approve(request_id)
    assert "champion" not in aliases(direct, name)

    request_id = gate.governed_api("DELETE", ALIAS, {"name": name, "alias": "prod-eu"}, "delete_alias")
    assert aliases(direct, name) == {"prod-eu": v2}
    gate.approve(request_id)
    assert aliases(direct, name) == {}


# -- new versions in protected models ------------------------------------------------------------


def test_copying_into_a_protected_model_is_governed(gate, client, direct, mlflow_server):
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.set_registered_model_alias(name, "champion", v1)
    prod, other = f"prod.{name}", f"{name}-copy"

    # Into an ordinary model: passes on every channel.
    copied = client.copy_model_version(f"models:/{name}@champion", other)
    assert copied.source == f"models:/{name}/{v1}"
    gate.passes("api", "POST", "model-versions/create", {"name": other, "source": f"models:/{name}/{v2}"})
    # MLflow 3 resolves a raw @alias source; 2.x answers 500 (Checkpoint passes either answer through).
    modern = mlflow_major(mlflow_server) >= 3
    gate.passes(
        "ajax-api",
        "POST",
        "model-versions/create",
        {"name": other, "source": f"models:/{name}@champion"},
        status=200 if modern else 500,
    )
    assert sorted(v.source for v in direct.search_model_versions(f"name = '{other}'")) == sorted(
        [f"models:/{name}/{v1}", f"models:/{name}/{v2}"] + ([f"models:/{name}/{v1}"] if modern else [])
    )

    # Into prod.<name>: governed. The client resolves @champion itself before asking.
    request_id = refused_by_client(lambda: client.copy_model_version(f"models:/{name}@champion", prod), gate, "create_version")
    opened = api(gate.url, "GET", f"/requests/{request_id}").json()
    assert opened["change"]["source"] == f"models:/{name}/{v1}" and opened["model"] == prod
    assert direct.search_model_versions(f"name = '{prod}'") == []
    gate.approve(request_id)
    (made,) = direct.search_model_versions(f"name = '{prod}'")
    assert made.source == f"models:/{name}/{v1}"

    # A copy of what prod's newest version already is changes nothing: answered as MLflow would, no request.
    again = client.copy_model_version(f"models:/{name}@champion", prod)
    assert again.version == made.version and again.source == made.source
    assert len(direct.search_model_versions(f"name = '{prod}'")) == 1
    direct.set_registered_model_alias(name, "champion", v2)  # now @champion names a version prod has not got
    change = gate.pointer("POST", "model-versions/create", {"name": prod, "source": f"models:/{name}@champion"}, "create_version")
    assert change["name"] == prod and change["source"] == f"models:/{name}@champion"

    request_id = gate.governed_api(
        "POST", "model-versions/create", {"name": prod, "source": f"models:/{name}/{v2}"}, "create_version"
    )
    assert len(direct.search_model_versions(f"name = '{prod}'")) == 1
    gate.approve(request_id)
    assert sorted(v.source for v in direct.search_model_versions(f"name = '{prod}'")) == [
        f"models:/{name}/{v1}",
        f"models:/{name}/{v2}",
    ]


def test_registering_a_run_model_into_a_protected_model_is_governed(gate, client, direct, mlflow_server):
    name, (v1, v2) = make_model(mlflow_server.url)
    source, second = direct.get_model_version(name, v1), direct.get_model_version(name, v2)
    prod = f"prod.{name}"

    request_id = refused_by_client(
        lambda: client.create_model_version(prod, source.source, run_id=source.run_id), gate, "create_version"
    )
    assert not exists(direct, prod)
    gate.approve(request_id)
    (made,) = direct.search_model_versions(f"name = '{prod}'")
    assert (made.source, made.run_id) == (source.source, source.run_id)

    body = {"name": prod, "source": second.source, "run_id": second.run_id, "description": "from the pipeline"}
    gate.pointer("POST", "model-versions/create", body, "create_version")
    request_id = gate.governed_api("POST", "model-versions/create", body, "create_version")
    assert len(direct.search_model_versions(f"name = '{prod}'")) == 1
    gate.approve(request_id)
    made = max(direct.search_model_versions(f"name = '{prod}'"), key=lambda v: int(v.version))
    assert (made.version, made.source, made.run_id, made.description) == ("2", second.source, second.run_id, "from the pipeline")


# -- tags -------------------------------------------------------------------------------------------


def test_protected_tags_are_governed_others_pass(gate, client, direct, mlflow_server):
    name, (v1, _v2) = make_model(mlflow_server.url)
    version_tags = lambda: direct.get_model_version(name, v1).tags  # noqa: E731
    model_tags = lambda: direct.get_registered_model(name).tags  # noqa: E731

    client.set_model_version_tag(name, v1, "note", "a")
    gate.passes("api", "POST", "registered-models/set-tag", {"name": name, "key": "note", "value": "b"})
    gate.passes("ajax-api", "DELETE", "model-versions/delete-tag", {"name": name, "version": v1, "key": "note"})
    assert "note" not in version_tags() and model_tags()["note"] == "b"

    # On a version.
    gate.pointer(
        "POST", "model-versions/set-tag", {"name": name, "version": v1, "key": "validation_status", "value": "x"}, "set_tag"
    )
    request_id = refused_by_client(lambda: client.set_model_version_tag(name, v1, "validation_status", "passed"), gate, "set_tag")
    assert "validation_status" not in version_tags()
    gate.approve(request_id)
    assert version_tags()["validation_status"] == "passed"
    request_id = gate.governed_api(
        "DELETE", "model-versions/delete-tag", {"name": name, "version": v1, "key": "validation_status"}, "delete_tag"
    )
    assert version_tags()["validation_status"] == "passed"
    gate.approve(request_id)
    assert "validation_status" not in version_tags()

    # On the registered model.
    request_id = refused_by_client(lambda: client.set_registered_model_tag(name, "validation_status", "passed"), gate, "set_tag")
    assert "validation_status" not in model_tags()
    gate.approve(request_id)
    assert model_tags()["validation_status"] == "passed"
    change = gate.pointer("DELETE", "registered-models/delete-tag", {"name": name, "key": "validation_status"}, "delete_tag")
    assert change["version"] is None
    request_id = gate.governed_api(
        "DELETE", "registered-models/delete-tag", {"name": name, "key": "validation_status"}, "delete_tag"
    )
    gate.approve(request_id)
    assert model_tags() == {"note": "b"}


def test_marking_a_model_as_a_prompt_is_governed(gate, direct, mlflow_server):
    """Prompts are not reviewed, so the prompt marker on a model would open every alias."""
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.set_registered_model_alias(name, "champion", v1)
    marker = {"name": name, "key": "mlflow.prompt.is_prompt", "value": "true"}

    gate.pointer("POST", "registered-models/set-tag", marker, "set_tag")
    gate.governed_api("POST", "registered-models/set-tag", marker, "set_tag")
    gate.governed_api("POST", ALIAS, {"name": name, "alias": "champion", "version": v2}, "set_alias")
    assert aliases(direct, name) == {"champion": v1}
    assert "mlflow.prompt.is_prompt" not in direct.get_registered_model(name).tags


# -- deleting ---------------------------------------------------------------------------------------


def test_deleting_a_production_or_champion_version_is_governed(gate, client, direct, mlflow_server):
    name, (v1, v2, v3, v4) = make_model(mlflow_server.url, versions=4)
    direct.transition_model_version_stage(name, v1, "Production")
    direct.set_registered_model_alias(name, "champion", v2)
    remaining = lambda: sorted(v.version for v in direct.search_model_versions(f"name = '{name}'"))  # noqa: E731

    client.delete_model_version(name, v3)
    gate.passes("ajax-api", "DELETE", "model-versions/delete", {"name": name, "version": v4})
    assert remaining() == [v1, v2]

    gate.pointer("DELETE", "model-versions/delete", {"name": name, "version": v1}, "delete_version")
    request_id = refused_by_client(lambda: client.delete_model_version(name, v1), gate, "delete_version")
    assert remaining() == [v1, v2]
    gate.approve(request_id)
    assert remaining() == [v2]

    request_id = gate.governed_api("DELETE", "model-versions/delete", {"name": name, "version": v2}, "delete_version")
    assert remaining() == [v2]
    gate.approve(request_id)
    assert remaining() == []


def test_deleting_a_model_holding_a_champion_is_governed(gate, client, direct, mlflow_server):
    first, (v1,) = make_model(mlflow_server.url, versions=1)
    second, (w1,) = make_model(mlflow_server.url, versions=1)
    direct.set_registered_model_alias(first, "champion", v1)
    direct.set_registered_model_alias(second, "champion", w1)
    plain = unique("plain")
    direct.create_registered_model(plain)

    gate.passes("api", "DELETE", "registered-models/delete", {"name": plain})
    assert not exists(direct, plain)

    gate.pointer("DELETE", "registered-models/delete", {"name": first}, "delete_model")
    request_id = refused_by_client(lambda: client.delete_registered_model(first), gate, "delete_model")
    assert exists(direct, first)
    gate.approve(request_id)
    assert not exists(direct, first)

    request_id = gate.governed_api("DELETE", "registered-models/delete", {"name": second}, "delete_model")
    assert exists(direct, second)
    gate.approve(request_id)
    assert not exists(direct, second)


# -- renaming -------------------------------------------------------------------------------------


def test_renames_that_touch_production_are_governed(gate, client, direct, mlflow_server):
    name, (v1,) = make_model(mlflow_server.url, versions=1)
    direct.set_registered_model_alias(name, "champion", v1)
    plain = unique("plain")
    direct.create_registered_model(plain)

    gate.passes("ajax-api", "POST", "registered-models/rename", {"name": plain, "new_name": f"{plain}-2"})
    assert exists(direct, f"{plain}-2") and not exists(direct, plain)

    # A model with a champion.
    renamed = f"{name}-renamed"
    gate.pointer("POST", "registered-models/rename", {"name": name, "new_name": renamed}, "rename")
    request_id = refused_by_client(lambda: client.rename_registered_model(name, renamed), gate, "rename")
    assert exists(direct, name) and not exists(direct, renamed)
    gate.approve(request_id)
    assert aliases(direct, renamed) == {"champion": v1} and not exists(direct, name)

    # Into a protected name (an ordinary model with no champion).
    protected = f"prod.{plain}"
    request_id = gate.governed_api("POST", "registered-models/rename", {"name": f"{plain}-2", "new_name": protected}, "rename")
    assert not exists(direct, protected)
    gate.approve(request_id)
    assert exists(direct, protected) and not exists(direct, f"{plain}-2")

    # Out of a protected name.
    request_id = refused_by_client(lambda: client.rename_registered_model(protected, plain), gate, "rename")
    gate.approve(request_id)
    assert exists(direct, plain) and not exists(direct, protected)


# -- prompts ----------------------------------------------------------------------------------------


def test_prompt_aliases_pass(gate, client, direct):
    name = unique("prompt")
    direct.register_prompt(name=name, template="Hello {{who}}")
    direct.register_prompt(name=name, template="Hi {{who}}")
    holder = lambda alias_name: direct.get_prompt_version_by_alias(name, alias_name).version  # noqa: E731

    client.set_prompt_alias(name, "production", 1)
    assert holder("production") == 1
    gate.passes("api", "POST", ALIAS, {"name": name, "alias": "production", "version": "2"})
    assert holder("production") == 2
    gate.passes("ajax-api", "POST", ALIAS, {"name": name, "alias": "champion", "version": "1"})
    assert holder("champion") == 1
    gate.passes("api", "DELETE", ALIAS, {"name": name, "alias": "champion"})
    with pytest.raises(MlflowException):
        direct.get_prompt_version_by_alias(name, "champion")


# -- PostgreSQL --------------------------------------------------------------------------------------


def test_governed_alias_on_each_database(live_checkpoint, mlflow_server, direct, monkeypatch):
    """The client → request → approval → applied path on Checkpoint served on SQLite and PostgreSQL."""
    gate_ = Gate(live_checkpoint.url, live_checkpoint.app)
    client_ = _pipeline_client(live_checkpoint.url, monkeypatch)
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.set_registered_model_alias(name, "champion", v1)

    gate_.pointer("POST", ALIAS, {"name": name, "alias": "champion", "version": v2}, "set_alias")
    request_id = refused_by_client(lambda: client_.set_registered_model_alias(name, "champion", v2), gate_, "set_alias")
    gate_.approve(request_id)
    assert aliases(direct, name) == {"champion": v2}
    request_id = gate_.governed_api("DELETE", ALIAS, {"name": name, "alias": "champion"}, "delete_alias")
    gate_.approve(request_id)
    assert aliases(direct, name) == {}
