"""Issue #12, classes 2, 3, 5, 6 and 7, tried the way an ordinary user would, through
Checkpoint against a real MLflow, every result read back from MLflow directly.

* one parser: a lower-case stage through the new-request form, odd spellings through the API
  and the pipeline client, all meet the rule written for the stage;
* governed at creation: a protected tag on ``model-versions/create`` (any model) and on
  ``registered-models/create``;
* moving ``models:`` sources: pinned to the version they named when the request opened;
* the prompt disguise: the prompt marker is governed whatever the model is now;
* naming a reviewer grants no right (MLflow basic-auth, and a ``groups:`` rule).

Next to each attack, the legitimate path still works.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from checkpoint import create_app
from checkpoint.services import services
from tests.support.apps import LiveCheckpoint, close_app, live
from tests.support.auth import ADMIN, PASSWORDS, grant, mlflow_mode
from tests.support.governed import api, make_model, unique
from tests.support.hostile import form_session

PROMPT = "mlflow.prompt.is_prompt"
POLICY = """
rules:
  - name: production-stage
    models: ["*"]
    targets: ["stage:production"]
    reviewers: [dave]
  - name: leads
    models: ["grp-*"]
    targets: ["alias:champion"]
    groups: [ml-leads]
  - name: checked
    models: ["chk-*"]
    targets: ["alias:champion"]
    checks:
      - {name: validated, kind: tags, tags: {validation_status: passed}}
"""


@pytest.fixture
def gate(mlflow_server, sqlite_url, tmp_path) -> Iterator[LiveCheckpoint]:
    """Checkpoint (no-auth mode) with a rule that only dave may approve the Production stage,
    written in lower case in the policy file."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    application = create_app(
        {"registry_url": mlflow_server.url, "database_url": sqlite_url, "data_dir": tmp_path, "policy_file": policy}
    )
    with live(application, sqlite_url) as served:
        yield served


@pytest.fixture
def direct(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


@pytest.fixture
def alice(gate, monkeypatch) -> MlflowClient:
    """The unmodified MLflow client, through Checkpoint, as alice."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "x")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowClient(tracking_uri=gate.url, registry_uri=gate.url)


def opened_count(gate: LiveCheckpoint) -> int:
    return services(gate.app).store.count()


def refused(call) -> int:
    """The MLflow client's call is stopped, naming a promote request: its id."""
    with pytest.raises(MlflowException) as caught:
        call()
    message = str(caught.value)
    assert "PERMISSION_DENIED" in message and "needs review" in message, message
    return int(re.search(r"promote request #(\d+)", message).group(1))


def rest(base: str, method: str, endpoint: str, body: dict, user: str = "alice", prefix: str = "api") -> requests.Response:
    return requests.request(method, f"{base}/{prefix}/2.0/mlflow/{endpoint}", json=body, auth=(user, "x"), timeout=60)


def approve(base: str, request_id: int, user: str = "bob") -> dict:
    answer = api(base, "POST", f"/requests/{request_id}/reviews", user=user, json={"verdict": "approve"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def registered(mlflow_url: str, name: str) -> dict:
    """A registered model's tags and aliases read from MLflow's REST API (the client hides prompts)."""
    answer = requests.get(f"{mlflow_url}/api/2.0/mlflow/registered-models/get", params={"name": name}, timeout=30)
    assert answer.status_code == 200, answer.text
    model = answer.json()["registered_model"]
    return {
        "tags": {t["key"]: t["value"] for t in model.get("tags", [])},
        "aliases": {a["alias"]: a["version"] for a in model.get("aliases", [])},
    }


def token(change: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(change).encode()).decode().rstrip("=")


# -- class 3: one parser for every way a change enters ------------------------------------------------


def test_lower_case_stage_through_the_form_meets_the_stage_rule(gate, direct, mlflow_server):
    """The form's token is user input: ``stage: "production"`` is the Production stage, under the
    rule written for it (only dave), not the default rule that let bob approve."""
    name, (v1, v2) = make_model(mlflow_server.url)
    forms = form_session(gate.url, user="alice")
    session = requests.Session()
    session.headers["Cookie"] = forms.cookie
    change = {"kind": "transition", "name": name, "version": v2, "stage": "production"}
    page = session.get(f"{gate.url}/checkpoint/requests/new", params={"change": token(change)}, timeout=30)
    assert page.status_code == 200 and "Production" in page.text
    posted = session.post(
        f"{gate.url}/checkpoint/requests/new",
        timeout=30,
        allow_redirects=False,
        data={"change": token(change), "title": "go", "description": "", "reviewers": "", "csrf_token": forms.token},
    )
    assert posted.status_code == 303, posted.text[:500]
    request_id = int(posted.headers["Location"].rsplit("/", 1)[1])
    opened = api(gate.url, "GET", f"/requests/{request_id}").json()
    assert (opened["target"], opened["rule"]["name"], opened["change"]["stage"]) == (
        "stage:Production",
        "production-stage",
        "Production",
    )

    bob = api(gate.url, "POST", f"/requests/{request_id}/reviews", user="bob", json={"verdict": "approve"})
    assert bob.status_code == 403 and "production-stage" in bob.json()["message"]
    assert direct.get_model_version(name, v2).current_stage == "None"  # read from MLflow itself

    assert approve(gate.url, request_id, user="dave")["state"] == "applied"
    assert direct.get_model_version(name, v2).current_stage == "Production"


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "transition", "name": "{name}", "version": "02", "stage": "PRODUCTION"},
        {"kind": "transition", "name": "{name}", "version": " 2", "stage": "pRoDuCtIoN", "archiveExistingVersions": True},
        {"kind": "transition", "name": "{name}", "version": "+2", "stage": "production", "archive_existing_versions": False},
    ],
    ids=["zero-padded-upper", "camel-case-space", "plus-sign"],
)
def test_odd_spellings_through_the_api_are_canonical(gate, direct, mlflow_server, change):
    """MLflow reads ``int(version)`` and the stage in any case; so does every entry of Checkpoint."""
    name, (_v1, v2) = make_model(mlflow_server.url)
    body = {k: v.format(name=name) if isinstance(v, str) else v for k, v in change.items()}
    answer = api(gate.url, "POST", "/requests", user="alice", json={"change": body})
    assert answer.status_code == 201, answer.text
    opened = answer.json()
    assert (opened["version"], opened["target"], opened["rule"]["name"]) == (v2, "stage:Production", "production-stage")
    assert opened["challenger"]["version"] == v2
    # The same change spelled canonically is the same request (one dedupe key for every spelling).
    again = api(
        gate.url,
        "POST",
        "/requests",
        user="alice",
        json={
            "change": {
                "kind": "transition",
                "name": name,
                "version": v2,
                "stage": "Production",
                "archive_existing_versions": bool(body.get("archiveExistingVersions", False)),
            }
        },
    )
    assert again.status_code == 200 and again.json()["id"] == opened["id"]
    assert api(gate.url, "POST", f"/requests/{opened['id']}/reviews", user="bob", json={"verdict": "approve"}).status_code == 403
    assert direct.get_model_version(name, v2).current_stage == "None"


def test_mlflow_reads_a_version_as_an_integer(direct, mlflow_server):
    """The fact the canonical spelling stands on, measured on the real server: ``"02"``, ``" 2"``
    and ``"+2"`` all name version 2 (MLflow calls ``int()`` on it)."""
    name, (_v1, v2) = make_model(mlflow_server.url)
    for spelling, alias in (("02", "a"), (" 2", "b"), ("+2", "c")):
        answer = requests.post(
            f"{mlflow_server.url}/api/2.0/mlflow/registered-models/alias",
            timeout=30,
            json={"name": name, "alias": alias, "version": spelling},
        )
        assert answer.status_code == 200, answer.text
        assert direct.get_model_version_by_alias(name, alias).version == v2


def test_pipeline_client_and_proxied_call_agree(gate, alice, direct, mlflow_server):
    from checkpoint.client import CheckpointClient

    name, (_v1, v2) = make_model(mlflow_server.url)
    made = CheckpointClient(gate.url, username="alice", password="x").promote(name, v2, stage="production")
    assert (made["target"], made["rule"]["name"]) == ("stage:Production", "production-stage")
    request_id = refused(lambda: alice.transition_model_version_stage(name, v2, "PRODUCTION"))
    assert request_id == made["id"]  # the MLflow client's spelling is the same change
    assert direct.get_model_version(name, v2).current_stage == "None"


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        ({"kind": "transition", "name": "m", "version": "2", "stage": "Prod"}, "stage"),
        ({"kind": "transition", "name": "m", "version": "2.0", "stage": "Production"}, "integer"),
        ({"kind": "set_alias", "name": "m", "alias": "champion", "version": "²"}, "integer"),
        ({"kind": "set_alias", "name": "m", "alias": "champion", "version": "1", "colour": "red"}, "colour"),
        ({"kind": "create_version", "name": "prod.m", "source": "models://m/1"}, "no host"),
        ({"kind": "create_version", "name": "prod.m", "source": "models:/m/Prod"}, "models:"),
        ({"kind": "create_version", "name": "prod.m", "source": "runs:/r/model", "tags": [{"value": "x"}]}, "tags"),
    ],
    ids=[
        "unknown-stage",
        "decimal-version",
        "superscript-version",
        "unknown-field",
        "models-host",
        "models-bad-stage",
        "tag-without-key",
    ],
)
def test_what_mlflow_would_refuse_is_refused_on_every_entry(gate, change, mentions):
    before = opened_count(gate)
    answer = api(gate.url, "POST", "/requests", user="alice", json={"change": change})
    assert answer.status_code == 422 and mentions in answer.json()["message"], answer.text
    forms = form_session(gate.url, user="alice")
    form = requests.post(
        f"{gate.url}/checkpoint/requests/new",
        headers={"Cookie": forms.cookie},
        timeout=30,
        data={"change": token(change), "title": "t", "csrf_token": forms.token},
    )
    assert form.status_code == 400 and "not readable" in form.text
    assert opened_count(gate) == before


# -- class 5: governed at creation ----------------------------------------------------------------------


def test_a_protected_tag_on_version_create_is_governed_in_any_model(gate, alice, direct, mlflow_server):
    name, (v1,) = make_model(mlflow_server.url, versions=1)
    source = direct.get_model_version(name, v1)
    for target in (name, f"prod.{name}"):  # an ordinary model, and a protected one
        request_id = refused(
            lambda t=target: alice.create_model_version(
                t, source.source, run_id=source.run_id, tags={"validation_status": "passed"}
            )
        )
        count = len(direct.search_model_versions(f"name = '{target}'"))
        assert count == (1 if target == name else 0)  # nothing registered
        opened = api(gate.url, "GET", f"/requests/{request_id}").json()
        assert opened["kind"] == "create_version" and opened["model"] == target
        assert opened["change"]["body"]["tags"] == [{"key": "validation_status", "value": "passed"}]
        done = approve(gate.url, request_id)
        assert done["state"] == "applied", done
        made = max(direct.search_model_versions(f"name = '{target}'"), key=lambda v: int(v.version))
        assert (made.source, made.run_id, made.tags) == (source.source, source.run_id, {"validation_status": "passed"})

    # Legitimate: other tags on create pass untouched, and no request is opened.
    before = opened_count(gate)
    plain = alice.create_model_version(name, source.source, run_id=source.run_id, tags={"note": "retrained"})
    assert direct.get_model_version(name, plain.version).tags == {"note": "retrained"}
    assert opened_count(gate) == before


def test_a_protected_tag_on_model_create_is_governed(gate, alice, direct):
    name = unique("born-tagged")
    request_id = refused(
        lambda: alice.create_registered_model(name, tags={"validation_status": "passed"}, description="from the pipeline")
    )
    with pytest.raises(RestException):
        direct.get_registered_model(name)  # nothing created
    opened = api(gate.url, "GET", f"/requests/{request_id}").json()
    assert opened["kind"] == "create_model" and opened["target"] == "create"
    assert approve(gate.url, request_id)["state"] == "applied"
    made = direct.get_registered_model(name)
    assert (made.tags, made.description) == ({"validation_status": "passed"}, "from the pipeline")

    # The UI's create gets the pointer to the form, not a model.
    ui = rest(
        gate.url,
        "POST",
        "registered-models/create",
        {"name": f"{name}-ui", "tags": [{"key": "validation_status", "value": "passed"}]},
        prefix="ajax-api",
    )
    assert ui.status_code == 403 and ui.json()["checkpoint"]["action"] == "new_request"
    with pytest.raises(RestException):
        direct.get_registered_model(f"{name}-ui")

    # Legitimate: a model with ordinary tags (or none) is created directly.
    before = opened_count(gate)
    alice.create_registered_model(f"{name}-plain", tags={"team": "fraud"})
    assert direct.get_registered_model(f"{name}-plain").tags == {"team": "fraud"}
    assert opened_count(gate) == before


def test_a_required_tags_check_is_not_met_by_a_tag_sent_with_the_create(gate, alice, direct, mlflow_server):
    """The tag a required check trusts can no longer ride in on the create: the version that
    reaches the review without it is blocked by the check."""
    name, (v1,) = make_model(mlflow_server.url, name=unique("chk"), versions=1)
    source = direct.get_model_version(name, v1)
    refused(lambda: alice.create_model_version(name, source.source, run_id=source.run_id, tags={"validation_status": "passed"}))
    assert [v.version for v in direct.search_model_versions(f"name = '{name}'")] == [v1]
    plain = alice.create_model_version(name, source.source, run_id=source.run_id)
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": plain.version}
    opened = api(gate.url, "POST", "/requests", user="alice", json={"change": change}).json()
    assert opened["blocked_by_checks"] == ["validated"], opened
    assert approve(gate.url, opened["id"])["state"] == "open"
    assert direct.get_registered_model(name).aliases == {}


# -- class 6: copies from a moving reference ------------------------------------------------------------


def test_moving_models_sources_are_pinned_when_the_request_opens(gate, direct, mlflow_server):
    """Each reference is resolved at opening; after the review the reference moves to a new
    version, and the copy made on approval is still the version that was reviewed."""
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.transition_model_version_stage(name, v1, "Production")
    direct.set_registered_model_alias(name, "champion", v1)
    references = {
        "latest": (f"models:/{name}/latest", v2),
        "latest-upper-scheme": (f"MODELS:/{name}/LATEST", v2),
        "stage": (f"models:/{name}/Production", v1),
        "stage-lower": (f"models:/{name}/production", v1),
        "alias": (f"models:/{name}@champion", v1),
        "triple-slash": (f"models:///{name}/{v1}", v1),
        "query-string": (f"models:/{name}/{v1}?x=1", v1),
        "zero-padded": (f"models:/{name}/0{v2}", v2),
    }
    opened = {}
    for label, (source, expected) in references.items():
        target = f"prod.{name}-{label}"
        answer = rest(gate.url, "POST", "model-versions/create", {"name": target, "source": source})
        assert answer.status_code == 403, (label, answer.text)
        request_id = int(answer.headers["X-Checkpoint-Request"])
        request = api(gate.url, "GET", f"/requests/{request_id}").json()
        assert request["change"]["source"] == source  # what was asked, shown to reviewers
        assert request["change"]["resolved"] == f"models:/{name}/{expected}", (label, request["change"])
        assert request["challenger"]["version"] == expected, label  # so the diff has a challenger
        opened[label] = (request_id, target, expected)

    # The references move after the review: a new version, now latest, in Production and champion.
    run = direct.get_model_version(name, v2)
    v3 = direct.create_model_version(name, run.source, run_id=run.run_id).version
    direct.transition_model_version_stage(name, v3, "Production", archive_existing_versions=True)
    direct.set_registered_model_alias(name, "champion", v3)

    for label, (request_id, target, expected) in opened.items():
        assert approve(gate.url, request_id)["state"] == "applied", label
        (made,) = direct.search_model_versions(f"name = '{target}'")
        assert made.source == f"models:/{name}/{expected}", (label, made.source)
        assert made.source != f"models:/{name}/{v3}"


def test_a_moving_source_through_the_form_is_pinned_too(gate, direct, mlflow_server):
    name, (v1, v2) = make_model(mlflow_server.url)
    target = f"prod.{name}"
    pointer = rest(
        gate.url, "POST", "model-versions/create", {"name": target, "source": f"models:/{name}/latest"}, prefix="ajax-api"
    )
    assert pointer.status_code == 403
    url = pointer.json()["checkpoint"]["url"]
    forms = form_session(gate.url, user="alice")
    posted = requests.post(
        f"{gate.url}/checkpoint/requests/new",
        headers={"Cookie": forms.cookie},
        timeout=30,
        allow_redirects=False,
        data={"change": url.split("change=", 1)[1], "title": "copy", "csrf_token": forms.token},
    )
    assert posted.status_code == 303, posted.text[:500]
    request_id = int(posted.headers["Location"].rsplit("/", 1)[1])
    assert api(gate.url, "GET", f"/requests/{request_id}").json()["change"]["resolved"] == f"models:/{name}/{v2}"
    run = direct.get_model_version(name, v1)
    direct.create_model_version(name, run.source, run_id=run.run_id)  # v3, registered after the review
    assert approve(gate.url, request_id)["state"] == "applied"
    assert [v.source for v in direct.search_model_versions(f"name = '{target}'")] == [f"models:/{name}/{v2}"]


def test_a_source_that_does_not_parse_or_resolve_is_a_400(gate, direct, mlflow_server):
    name, (v1, _v2) = make_model(mlflow_server.url)
    target = f"prod.{name}"
    before = opened_count(gate)
    for source, mentions in [
        (f"models://{name}/{v1}", "no host"),
        (f"models:/{name}/Prod", "Invalid model version source"),
        (f"models:/{name}/{v1}/extra", "Invalid model version source"),
        (f"models:/{name}@nobody", "does not exist"),
        (f"models:/{name}/99", "does not exist"),
        (f"models:/{name}/Staging", "does not exist"),
        (f"models:/{unique('absent')}/latest", "no registered model"),
    ]:
        answer = rest(gate.url, "POST", "model-versions/create", {"name": target, "source": source})
        assert answer.status_code == 400, (source, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE" and mentions in answer.json()["message"], source
    assert opened_count(gate) == before
    assert direct.search_model_versions(f"name = '{target}'") == []


def test_ordinary_copies_pass_and_a_logged_model_registration_is_not_a_copy(gate, alice, direct, mlflow_server):
    name, (_v1, v2) = make_model(mlflow_server.url)
    direct.create_registered_model(f"{name}-copy")
    before = opened_count(gate)
    copied = rest(gate.url, "POST", "model-versions/create", {"name": f"{name}-copy", "source": f"models:/{name}/latest"})
    assert copied.status_code == 200, copied.text  # not governed: MLflow resolves it itself
    assert copied.json()["model_version"]["source"] == f"models:/{name}/{v2}"
    assert opened_count(gate) == before

    experiment = direct.get_experiment_by_name("governance-tests").experiment_id
    logged = direct.create_logged_model(experiment_id=experiment, name="fresh")
    body = {"name": f"prod.{name}", "source": f"models:/{logged.model_id}", "model_id": logged.model_id}
    answer = rest(gate.url, "POST", "model-versions/create", body)
    assert answer.status_code == 403, answer.text
    request = api(gate.url, "GET", f"/requests/{answer.headers['X-Checkpoint-Request']}").json()
    assert request["change"]["resolved"] == "" and "registering a new version" in request["title"].lower()
    assert approve(gate.url, request["id"])["state"] == "applied"
    (made,) = direct.search_model_versions(f"name = 'prod.{name}'")
    assert made.source == f"models:/{logged.model_id}"


# -- class 7: the prompt disguise -----------------------------------------------------------------------


def test_the_prompt_disguise_is_refused(gate, alice, direct, mlflow_server):
    """Create a model marked as a prompt, give it a real version, set champion, drop the marker:
    every step that would make it an unreviewed model is refused, and MLflow shows nothing moved."""
    name = unique("disguise")
    # The MLflow client refuses the prompt marker on create_registered_model; the server takes it by REST.
    created = rest(gate.url, "POST", "registered-models/create", {"name": name, "tags": [{"key": PROMPT, "value": "true"}]})
    assert created.status_code == 200, created.text  # passes: a new prompt serves nothing
    real, _ = make_model(mlflow_server.url, versions=1)
    source = direct.get_model_version(real, "1")
    # The MLflow client refuses this for a prompt; the server takes it by REST (a version without the marker).
    made = rest(gate.url, "POST", "model-versions/create", {"name": name, "source": source.source, "run_id": source.run_id})
    assert made.status_code == 200, made.text
    version = made.json()["model_version"]["version"]

    for call, body in [
        (("POST", "registered-models/alias"), {"name": name, "alias": "champion", "version": version}),
        (("DELETE", "registered-models/delete-tag"), {"name": name, "key": PROMPT}),
        (("POST", "registered-models/set-tag"), {"name": name, "key": PROMPT, "value": "false"}),
        (("POST", "model-versions/set-tag"), {"name": name, "version": version, "key": PROMPT, "value": "true"}),
    ]:
        answer = rest(gate.url, *call, body)
        assert answer.status_code == 403 and "X-Checkpoint-Request" in answer.headers, (call, answer.text)
    assert registered(mlflow_server.url, name) == {"tags": {PROMPT: "true"}, "aliases": {}}
    assert PROMPT not in direct.get_model_version(name, version).tags


def test_unmarking_a_prompt_that_holds_an_alias_is_governed(gate, alice, mlflow_server):
    """The original attack: a real prompt's champion moves freely; dropping the marker would
    turn that unreviewed champion into a model's, so the delete is governed although the model
    is a prompt at that moment."""
    name = unique("prompt")
    alice.register_prompt(name=name, template="Hello {{who}}")
    alice.set_prompt_alias(name, "champion", 1)  # a prompt's alias: passes
    answer = rest(gate.url, "DELETE", "registered-models/delete-tag", {"name": name, "key": PROMPT})
    assert answer.status_code == 403, answer.text
    request_id = int(answer.headers["X-Checkpoint-Request"])
    assert api(gate.url, "GET", f"/requests/{request_id}").json()["kind"] == "delete_tag"
    ui = rest(gate.url, "DELETE", "registered-models/delete-tag", {"name": name, "key": PROMPT}, prefix="ajax-api")
    assert ui.status_code == 403 and ui.json()["checkpoint"]["action"] == "new_request"
    state = registered(mlflow_server.url, name)
    assert (state["tags"][PROMPT], state["aliases"]) == ("true", {"champion": "1"})


def test_ordinary_prompts_keep_working_through_checkpoint(gate, alice, direct, mlflow_server):
    name = unique("prompt")
    before = opened_count(gate)
    alice.register_prompt(name=name, template="Hello {{who}}", tags={"team": "support"})
    alice.register_prompt(name=name, template="Hi {{who}}")
    alice.set_prompt_alias(name, "production", 1)
    alice.set_prompt_alias(name, "production", 2)
    alice.set_prompt_alias(name, "champion", 1)
    alice.delete_prompt_alias(name, "champion")
    assert direct.get_prompt_version_by_alias(name, "production").version == 2
    state = registered(mlflow_server.url, name)
    assert (state["tags"][PROMPT], state["tags"]["team"], state["aliases"]) == ("true", "support", {"production": "2"})
    assert opened_count(gate) == before


# -- class 2: naming a reviewer grants no right ---------------------------------------------------------


@pytest.fixture
def auth_gate(auth_mlflow, sqlite_url, tmp_path) -> Iterator[LiveCheckpoint]:
    application = create_app(mlflow_mode(auth_mlflow, sqlite_url, tmp_path))
    with live(application, sqlite_url) as served:
        yield served


def test_naming_a_reviewer_without_manage_is_refused_at_open(auth_gate, auth_mlflow, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    name, (v1, v2) = make_model(auth_mlflow.url)
    for user, permission in (("alice", "EDIT"), ("bob", "MANAGE"), ("carol", "READ")):
        grant(auth_mlflow.url, user, name, permission)
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}

    def as_(user: str, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method, f"{auth_gate.url}/checkpoint/api/v1{path}", auth=(user, PASSWORDS[user]), timeout=30, **kwargs
        )

    before = opened_count(auth_gate)
    named = as_("alice", "POST", "/requests", json={"change": change, "reviewers": ["carol"]})
    assert named.status_code == 400 and "carol" in named.json()["message"] and "MANAGE" in named.json()["message"]
    # The new-request form says the same to a person, instead of opening a request nobody named can approve.
    browser = requests.Session()
    browser.auth = ("alice", PASSWORDS["alice"])
    page = browser.get(f"{auth_gate.url}/checkpoint/requests/new", params={"change": token(change)}, timeout=30)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    form = browser.post(
        f"{auth_gate.url}/checkpoint/requests/new",
        timeout=30,
        allow_redirects=False,
        data={"change": token(change), "title": "go", "reviewers": "carol", "csrf_token": csrf},
    )
    assert form.status_code == 400 and "needs MANAGE on the model" in form.text
    assert opened_count(auth_gate) == before

    made = as_("alice", "POST", "/requests", json={"change": change, "reviewers": ["bob", ADMIN[0]]})
    assert made.status_code == 201, made.text  # MANAGE, and an admin (who may review anything): accepted
    request_id = made.json()["id"]
    assert made.json()["approvals"]["awaited"] == ["bob", ADMIN[0]]
    carol = as_("carol", "POST", f"/requests/{request_id}/reviews", json={"verdict": "approve"})
    assert carol.status_code == 403 and "MANAGE" in carol.json()["message"]
    admin = MlflowClient(tracking_uri=auth_mlflow.url)
    assert admin.get_registered_model(name).aliases == {}  # read from MLflow as the admin
    assert as_("bob", "POST", f"/requests/{request_id}/reviews", json={"verdict": "approve"}).json()["state"] == "applied"
    assert admin.get_model_version_by_alias(name, "champion").version == v2


def test_a_named_reviewer_outside_a_groups_rule_cannot_approve(mlflow_server, sqlite_url, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    application = create_app(
        {
            "registry_url": mlflow_server.url,
            "database_url": sqlite_url,
            "data_dir": tmp_path,
            "policy_file": policy,
            "auth": "header",
            "trusted_proxies": "127.0.0.1/32",
        }
    )
    try:
        client = application.test_client()

        def sso(user: str, groups: str) -> dict:
            return {
                "headers": {"X-Forwarded-User": user, "X-Forwarded-Groups": groups, "Authorization": "Bearer sso"},
                "environ_base": {"REMOTE_ADDR": "127.0.0.1"},
            }

        name, (_v1, v2) = make_model(mlflow_server.url, name=unique("grp"))
        change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
        made = client.post("/checkpoint/api/v1/requests", json={"change": change, "reviewers": ["eve"]}, **sso("alice", "ml"))
        assert made.status_code == 201, made.get_data(as_text=True)
        request_id = made.get_json()["id"]
        assert made.get_json()["rule"]["name"] == "leads"
        eve = client.post(
            f"/checkpoint/api/v1/requests/{request_id}/reviews", json={"verdict": "approve"}, **sso("eve", "interns")
        )
        assert eve.status_code == 403 and "not a reviewer" in eve.get_json()["message"]
        direct = MlflowClient(tracking_uri=mlflow_server.url)
        assert direct.get_registered_model(name).aliases == {}
        lead = client.post(
            f"/checkpoint/api/v1/requests/{request_id}/reviews", json={"verdict": "approve"}, **sso("lee", "ml-leads")
        )
        assert lead.get_json()["state"] == "applied", lead.get_json()
        assert direct.get_model_version_by_alias(name, "champion").version == v2
    finally:
        close_app(application)
