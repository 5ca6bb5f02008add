"""Who asks, and what the author sees before asking: against a real MLflow and Checkpoint served
over real HTTP, with the unmodified MLflow client.

* The MLflow client sends ``MLFLOW_TRACKING_USERNAME`` only together with a password; without
  one, no request is authored by "anonymous": the client is told what to set.
* ``copy_model_version`` wraps every refusal in MLflow's own words; the exact text users see.
* The new-request form judges the rule's checks and shows the diff in one line before the author
  opens anything, asks a nameless visitor for a name, and takes a description from the link
  (the stage-transition dialog's comment, carried by panel.js).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from checkpoint import create_app
from checkpoint.services import services
from tests.support.databases import migrated_sqlite
from tests.support.governed import make_model, unique
from tests.support.serving import served

POLICY = """
rules:
  - name: gated
    models: ["form-*"]
    targets: ["alias:champion"]
    required_approvals: 1
    checks:
      - {name: auc-gate, kind: metric, expression: "val_auc >= champion"}
      - {name: validated, kind: tags, tags: {validation_status: passed}}
      - {name: explained, kind: description, min_length: 20, required: false}
"""
XSS = "<script>window.__x=1</script> retrained on May"


@dataclass
class Site:
    url: str
    app: object

    def stored(self) -> int:
        return services(self.app).store.count()


@pytest.fixture(scope="module")
def site(mlflow_server, tmp_path_factory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("form")
    policy = data_dir / "policy.yaml"
    policy.write_text(POLICY)
    application = create_app(
        {
            "registry_url": mlflow_server.url,
            "database_url": migrated_sqlite(data_dir),
            "data_dir": data_dir,
            "policy_file": policy,
            "background": False,
        }
    )
    with served(application) as url:
        yield Site(url, application)


@pytest.fixture
def model(mlflow_server) -> tuple[str, str, str]:
    """``form-*``: champion v1 (validated, val_auc 0.9, dataset april); v2 worse, never validated, dataset may."""
    name, (v1, v2) = make_model(mlflow_server.url, unique("form"))
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    for version, auc, dataset in ((v1, 0.9, "april"), (v2, 0.85, "may")):
        run_id = direct.get_model_version(name, version).run_id
        direct.log_metric(run_id, "val_auc", auc)
        direct.set_tag(run_id, "dataset", dataset)
    direct.set_model_version_tag(name, v1, "validation_status", "passed")
    direct.set_registered_model_alias(name, "champion", v1)
    return name, v1, v2


def client_as(url: str, monkeypatch, username: str | None, password: str | None) -> MlflowClient:
    for key, value in (("MLFLOW_TRACKING_USERNAME", username), ("MLFLOW_TRACKING_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowClient(tracking_uri=url, registry_uri=url)


def form_link(name: str, version: str) -> str:
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": version}
    return base64.urlsafe_b64encode(json.dumps(change).encode()).decode().rstrip("=")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


# -- 1. never "anonymous" --------------------------------------------------------------------------


def test_a_username_without_a_password_is_told_to_set_one_and_opens_nothing(site, model, monkeypatch):
    name, _, v2 = model
    before = site.stored()
    nameless = client_as(site.url, monkeypatch, "alice", None)
    with pytest.raises(RestException) as refused:
        nameless.set_registered_model_alias(name, "champion", v2)
    assert refused.value.error_code == "UNAUTHENTICATED"
    message = str(refused.value)
    assert message.startswith(f"UNAUTHENTICATED: Checkpoint: moving alias 'champion' of '{name}'"), message
    assert "MLFLOW_TRACKING_USERNAME only together with MLFLOW_TRACKING_PASSWORD" in message
    assert site.stored() == before

    named = client_as(site.url, monkeypatch, "alice", "not-checked")
    with pytest.raises(RestException) as opened:
        named.set_registered_model_alias(name, "champion", v2)
    assert opened.value.error_code == "PERMISSION_DENIED"
    request_id = opened.value.json["checkpoint"]["request_id"]
    assert services(site.app).store.get(request_id).author == "alice"
    assert site.stored() == before + 1


def test_the_api_refuses_a_nameless_author(site, model):
    name, _, v2 = model
    before = site.stored()
    answer = requests.post(
        f"{site.url}/checkpoint/api/v1/requests",
        json={"change": {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}},
        auth=("", "x"),  # credentials without a user name: no name to author with
        timeout=30,
    )
    assert answer.status_code == 401, answer.text
    assert answer.json()["error_code"] == "UNAUTHENTICATED" and "Basic-auth user name" in answer.json()["message"]
    assert site.stored() == before


# -- 15. copy_model_version: the words MLflow's client puts around Checkpoint's -----------------------


def test_copy_model_version_shows_checkpoints_message_under_mlflows_own_words(site, model, monkeypatch):
    """Every refusal of the copy's create call is re-raised by MLflow's client as INTERNAL_ERROR with
    its "may not yet support" preamble (``AbstractStore.copy_model_version``); Checkpoint's message
    follows verbatim on the next line, and the original answer is the exception's cause."""
    name, v1, _ = model
    client = client_as(site.url, monkeypatch, "alice", "not-checked")
    with pytest.raises(MlflowException) as refused:
        client.copy_model_version(f"models:/{name}/{v1}", f"prod.{name}")
    cause = refused.value.__cause__
    assert isinstance(cause, RestException) and cause.error_code == "PERMISSION_DENIED"
    request_id = cause.json["checkpoint"]["request_id"]
    url = f"{site.url}/checkpoint/requests/{request_id}"
    assert str(refused.value) == (
        "Failed to create model version copy. The current model registry backend may not yet support model "
        f"version URI sources.\nError: PERMISSION_DENIED: Checkpoint: copying '{name}' version {v1} into "
        f"'prod.{name}' needs review — promote request #{request_id}: {url}"
    )
    assert refused.value.error_code == "INTERNAL_ERROR"
    assert cause.json["checkpoint"]["url"] == url


# -- 6. the form: checks and diff before opening; a name; the dialog's comment -----------------------


def test_the_form_judges_the_checks_and_shows_the_diff_before_anything_is_stored(site, model):
    name, _, v2 = model
    before = site.stored()
    browser = requests.Session()
    browser.auth = ("alice", "x")
    page = browser.get(
        f"{site.url}/checkpoint/requests/new", params={"change": form_link(name, v2), "description": XSS}, timeout=60
    )
    assert page.status_code == 200, page.text[:500]
    html = page.text
    assert "What reviewers will see" in html
    assert re.search(r"cp-check-fail.*?auc-gate.*?val_auc", html, re.S), "auc-gate fails: v2's val_auc is lower"
    assert re.search(r"cp-check-fail.*?validated.*?validation_status is not set", html, re.S)
    assert re.search(r"cp-check-pass.*?explained", html, re.S), "the link's description is long enough"
    assert "2 required checks would fail now (auc-gate, validated)" in html
    assert "<strong>Diff:</strong> signature not readable · 1 metric worse · 1 parameter changed" in html
    assert "1 version tag only on the champion · 1 run tag differs" in html
    # The dialog's comment arrives as the description, as text.
    assert "&lt;script&gt;window.__x=1&lt;/script&gt; retrained on May</textarea>" in html
    assert "<script>window.__x" not in html
    assert site.stored() == before

    # "Check again" judges what is typed now, and still stores nothing.
    again = browser.post(
        f"{site.url}/checkpoint/requests/new",
        data={
            "change": form_link(name, v2),
            "title": "t",
            "description": "short",
            "action": "preview",
            "csrf_token": csrf_of(html),
        },
        timeout=60,
    )
    assert again.status_code == 200
    assert re.search(r"cp-check-fail.*?explained.*?description has 5 characters", again.text, re.S)
    assert site.stored() == before


def test_a_nameless_visitor_gives_a_name_on_the_form(site, model):
    name, _, v2 = model
    before = site.stored()
    visitor = requests.Session()  # no credentials, no name picked: "anonymous"
    page = visitor.get(f"{site.url}/checkpoint/requests/new", params={"change": form_link(name, v2)}, timeout=60)
    assert 'id="name" name="name"' in page.text and "You are <strong>anonymous</strong>" in page.text
    base = {"change": form_link(name, v2), "title": "Ship v2", "description": "", "csrf_token": csrf_of(page.text)}

    judged = visitor.post(f"{site.url}/checkpoint/requests/new", data={**base, "action": "preview"}, timeout=60)
    assert judged.status_code == 200 and "Give your name" not in judged.text  # only judging: no name needed yet
    for given, said in (("", "Give your name"), ("anonymous", "never authored by &#34;anonymous&#34;")):
        refused = visitor.post(f"{site.url}/checkpoint/requests/new", data={**base, "name": given}, timeout=60)
        assert refused.status_code == 400 and said in refused.text, refused.text[:2000]
        assert site.stored() == before

    form_url = f"{site.url}/checkpoint/requests/new"
    opened = visitor.post(form_url, data={**base, "name": "carol"}, timeout=60, allow_redirects=False)
    assert opened.status_code == 303, opened.text[:1000]
    request_id = int(opened.headers["Location"].rsplit("/", 1)[1])
    assert services(site.app).store.get(request_id).author == "carol"
    # The name stays for the next pages, as /checkpoint/whoami keeps it.
    assert "You are <strong>carol</strong>" in visitor.get(f"{site.url}/checkpoint/requests/{request_id}", timeout=60).text


def test_a_signed_in_visitor_is_not_asked_for_a_name(site, model):
    name, _, v2 = model
    page = requests.get(
        f"{site.url}/checkpoint/requests/new", params={"change": form_link(name, v2)}, auth=("alice", "x"), timeout=60
    )
    assert page.status_code == 200 and 'id="name" name="name"' not in page.text
    assert "You are <strong>alice</strong>" in page.text
