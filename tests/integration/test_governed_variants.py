"""Governed calls in every spelling MLflow accepts (../shared/MLFLOW.md §1.4), sent byte-exact
to Checkpoint in front of the real MLflow: each one is governed (403 + a promote request, or
a pointer to the form for the UI) or refused the way MLflow refuses it, and the targeted
model is unchanged afterwards. Never passed through.

Each variant is also sent, byte for byte, straight to MLflow on a throwaway model in the
same state: where MLflow answers 200 the variant really reaches a registry handler (so
governing it matters); where Checkpoint refuses, MLflow refuses with the same status class.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import requests

from checkpoint import create_app
from checkpoint.services import services
from tests.support.compat import mlflow_major
from tests.support.databases import migrated_sqlite
from tests.support.governed import api, make_model
from tests.support.serving import served

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"
ALIAS = "registered-models/alias"
JSON = {"Content-Type": "application/json"}
ALICE = {"Authorization": "Basic " + base64.b64encode(b"alice:x").decode()}


# -- the registry state every variant targets ---------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A model in the state Checkpoint protects: v1 in Production holding ``champion`` and a
    ``validation_status`` tag (on v1 and on the model); v2 unremarkable; an empty ``prod.<name>``."""

    name: str
    v1: str
    v2: str
    run1: str
    source1: str

    def fill(self, text: str) -> str:
        return text.format(name=self.name, v1=self.v1, v2=self.v2, run1=self.run1, source1=self.source1)


def _rest(base: str, method: str, endpoint: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{base}{API}/{endpoint}", timeout=30, **kwargs)


def _ok(response: requests.Response) -> dict:
    assert response.status_code == 200, f"{response.request.method} {response.url}: {response.status_code} {response.text}"
    return response.json()


def prepare(mlflow_url: str) -> Model:
    name, (v1, v2) = make_model(mlflow_url)
    version = _ok(_rest(mlflow_url, "GET", "model-versions/get", params={"name": name, "version": v1}))["model_version"]
    for endpoint, body in [
        (
            "model-versions/transition-stage",
            {"name": name, "version": v1, "stage": "Production", "archive_existing_versions": False},
        ),
        (ALIAS, {"name": name, "alias": "champion", "version": v1}),
        ("model-versions/set-tag", {"name": name, "version": v1, "key": "validation_status", "value": "passed"}),
        ("registered-models/set-tag", {"name": name, "key": "validation_status", "value": "passed"}),
        ("registered-models/create", {"name": f"prod.{name}"}),
    ]:
        _ok(_rest(mlflow_url, "POST", endpoint, json=body))
    return Model(name, v1, v2, version["run_id"], version["source"])


def snapshot(mlflow_url: str, model: Model) -> dict:
    """Everything a variant could change: models named like the target (renames, prod.*
    copies), their tags and aliases, and every version's stage and tags."""
    like = f"name LIKE '%{model.name}%'"
    models = _ok(_rest(mlflow_url, "GET", "registered-models/search", params={"filter": like, "max_results": 100}))
    versions = _ok(_rest(mlflow_url, "GET", "model-versions/search", params={"filter": like, "max_results": 100}))
    return {
        "models": {
            m["name"]: {
                "tags": {t["key"]: t["value"] for t in m.get("tags", [])},
                "aliases": {a["alias"]: a["version"] for a in m.get("aliases", [])},
            }
            for m in models.get("registered_models", [])
        },
        "versions": {
            (v["name"], v["version"]): {"stage": v["current_stage"], "tags": {t["key"]: t["value"] for t in v.get("tags", [])}}
            for v in versions.get("model_versions", [])
        },
    }


def restore(mlflow_url: str, model: Model, want: dict) -> None:
    """Put the throwaway model back the way ``want`` says, after MLflow applied a variant."""
    post = lambda endpoint, body: _ok(_rest(mlflow_url, "POST", endpoint, json=body))  # noqa: E731
    delete = lambda endpoint, body: _ok(_rest(mlflow_url, "DELETE", endpoint, json=body))  # noqa: E731
    have = snapshot(mlflow_url, model)
    if model.name not in have["models"]:
        found = _rest(mlflow_url, "GET", "registered-models/get", params={"name": model.name})
        if found.status_code == 200:  # hidden from search: the prompt marker was set
            delete("registered-models/delete-tag", {"name": model.name, "key": "mlflow.prompt.is_prompt"})
        else:
            (renamed,) = [n for n in have["models"] if n not in want["models"]]
            post("registered-models/rename", {"name": renamed, "new_name": model.name})
        have = snapshot(mlflow_url, model)
    for name, version in set(have["versions"]) - set(want["versions"]):
        delete("model-versions/delete", {"name": name, "version": version})
    for name, state in want["models"].items():
        now = have["models"][name]
        for key, value in state["tags"].items():
            if now["tags"].get(key) != value:
                post("registered-models/set-tag", {"name": name, "key": key, "value": value})
        for key in set(now["tags"]) - set(state["tags"]):
            delete("registered-models/delete-tag", {"name": name, "key": key})
        for alias, version in state["aliases"].items():
            if now["aliases"].get(alias) != version:
                post(ALIAS, {"name": name, "alias": alias, "version": version})
        for alias in set(now["aliases"]) - set(state["aliases"]):
            delete(ALIAS, {"name": name, "alias": alias})
    for (name, version), state in want["versions"].items():
        now = have["versions"][(name, version)]
        if now["stage"] != state["stage"]:
            post(
                "model-versions/transition-stage",
                {"name": name, "version": version, "stage": state["stage"], "archive_existing_versions": False},
            )
        for key, value in state["tags"].items():
            if now["tags"].get(key) != value:
                post("model-versions/set-tag", {"name": name, "version": version, "key": key, "value": value})
        for key in set(now["tags"]) - set(state["tags"]):
            delete("model-versions/delete-tag", {"name": name, "version": version, "key": key})


# -- raw HTTP ---------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def send(base: str, method: str, target: str, body: bytes | None, headers: dict[str, str], chunked: bool = False) -> Answer:
    """One request with the request-target, headers and body exactly as given."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body or b""), body or b""))
        else:
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


# -- the table --------------------------------------------------------------------------------

Body = Callable[[Model], "bytes | None"]


def js(**fields) -> Body:
    """A JSON body; string values are templates over the model ({name}, {v1}, {v2}, {run1}, {source1})."""
    return lambda m: json.dumps({k: m.fill(v) if isinstance(v, str) else v for k, v in fields.items()}).encode()


def text(template: str, encoding: str = "utf-8", prefix: bytes = b"") -> Body:
    """A body written out by hand (duplicate keys, broken JSON, other encodings)."""
    return lambda m: prefix + m.fill(template).encode(encoding)


def double_encoded(inner: Body) -> Body:
    return lambda m: json.dumps(inner(m).decode()).encode()


GOVERNED, REFUSED, STRICTER = "governed", "refused", "stricter"


@dataclass(frozen=True)
class Variant:
    id: str
    method: str
    target: str
    body: Body
    expect: str  # GOVERNED (403), REFUSED (MLflow's own status), STRICTER (400 where MLflow would act)
    mlflow: int | None  # what MLflow answers the same bytes; None: not sent (it would destroy the throwaway)
    kind: str | None = None  # the governed change's kind
    change: dict = field(default_factory=dict)  # fields the governed change must carry (templates)
    headers: dict = field(default_factory=lambda: dict(JSON))
    status: int | None = None  # REFUSED: Checkpoint's status (same class as MLflow's)
    chunked: bool = False

    @property
    def ui(self) -> bool:
        return "ajax-api" in self.target


SET_CHAMPION = js(name="{name}", alias="champion", version="{v2}")
DELETE_CHAMPION = js(name="{name}", alias="champion")
TO_PRODUCTION = js(name="{name}", version="{v2}", stage="Production")
CHAMPION_CHANGE = {"alias": "champion", "version": "{v2}"}


def alias(label: str, target: str, expect: str = GOVERNED, mlflow: int | None = 200, body: Body = SET_CHAMPION, **kw) -> Variant:
    change = kw.pop("change", CHAMPION_CHANGE if expect == GOVERNED else {})
    method = kw.pop("method", "POST")
    return Variant(f"set-alias/{label}", method, target, body, expect, mlflow, "set_alias", change, **kw)


VARIANTS = [
    # Prefixes and path spellings (MLflow 200 = reaches the handler; 404 = MLflow does not route it, still governed).
    alias("api-2.0", f"{API}/{ALIAS}"),
    alias("ajax-api-2.0", f"{AJAX}/{ALIAS}"),
    alias("api-2.0-preview", f"/api/2.0/preview/mlflow/{ALIAS}", mlflow=404),
    alias("ajax-api-2.0-preview", f"/ajax-api/2.0/preview/mlflow/{ALIAS}", mlflow=404),
    alias("api-3.0", f"/api/3.0/mlflow/{ALIAS}", mlflow=404),
    alias("static-prefix", f"/mlflow{API}/{ALIAS}", mlflow=404),
    alias("leading-double-slash", f"/{API}/{ALIAS}"),
    alias("interior-double-slash", f"{API}//registered-models//alias", mlflow=308),
    alias("encoded-slash", f"{API}/registered-models%2Falias"),
    alias("encoded-letter", f"{API}/registered-models/%61lias"),
    alias("encoded-prefix", "/%61pi/2.0/mlflow%2Fregistered-models/alias"),
    alias("query-string", f"{API}/{ALIAS}?name=other&alias=candidate&version=1"),
    alias("fragment", f"{API}/{ALIAS}#x", mlflow=404),
    alias("absolute-form", f"http://127.0.0.1:9{API}/{ALIAS}", mlflow=404),
    alias("no-leading-slash", f"{API[1:]}/{ALIAS}", mlflow=404),
    alias("lower-case-method", f"{API}/{ALIAS}", method="post"),
    alias("double-encoded-letter", f"{API}/registered-models/%2561lias", REFUSED, 404, status=404),
    alias("trailing-slash", f"{API}/{ALIAS}/", REFUSED, 404, status=404),
    alias("upper-case-path", f"/API/2.0/mlflow/{ALIAS}", REFUSED, 404, status=404),
    alias("upper-case-segment", f"{API}/Registered-Models/alias", REFUSED, 404, status=404),
    alias("dot-segment", f"{API}/registered-models/./alias", REFUSED, 404, status=404),
    alias("path-parameter", f"{API}/{ALIAS};x", REFUSED, 404, status=404),
    # Content types and bodies.
    alias("charset-utf-8", f"{API}/{ALIAS}", headers={"Content-Type": "application/json; charset=utf-8"}),
    alias("content-type-upper-case", f"{API}/{ALIAS}", mlflow=400, headers={"Content-Type": "Application/JSON"}),
    alias("content-type-text-plain", f"{API}/{ALIAS}", REFUSED, 400, status=400, headers={"Content-Type": "text/plain"}),
    alias("no-content-type", f"{API}/{ALIAS}", REFUSED, 400, status=400, headers={}),
    alias("chunked-body", f"{API}/{ALIAS}", mlflow=400, chunked=True),  # MLflow drops a chunked body
    alias("version-as-number", f"{API}/{ALIAS}", REFUSED, 400, status=400, body=js(name="{name}", alias="champion", version=2)),
    alias("version-missing", f"{API}/{ALIAS}", REFUSED, 400, status=400, body=js(name="{name}", alias="champion")),
    alias("name-missing", f"{API}/{ALIAS}", REFUSED, 400, status=400, body=js(alias="champion", version="{v2}")),
    alias("name-empty", f"{API}/{ALIAS}", REFUSED, 400, status=400, body=js(name="", alias="champion", version="{v2}")),
    alias("malformed-json", f"{API}/{ALIAS}", REFUSED, 400, status=400, body=text('{{"name": "{name}", "alias": ')),
    alias("double-encoded-body", f"{API}/{ALIAS}", body=double_encoded(SET_CHAMPION)),
    alias(
        "upper-case-alias",
        f"{API}/{ALIAS}",
        body=js(name="{name}", alias="CHAMPION", version="{v2}"),
        change={"alias": "CHAMPION"},
    ),
    alias("prod-eu", f"{API}/{ALIAS}", body=js(name="{name}", alias="prod-eu", version="{v2}"), change={"alias": "prod-eu"}),
    alias(
        "unicode-escaped-alias", f"{API}/{ALIAS}", body=text('{{"name": "{name}", "alias": "\\u0063hampion", "version": "{v2}"}}')
    ),
    # Where MLflow is ambiguous or lenient, Checkpoint refuses rather than guess.
    alias(
        "duplicated-json-key",
        f"{API}/{ALIAS}",
        STRICTER,
        200,
        body=text('{{"name": "{name}", "alias": "candidate", "alias": "champion", "version": "{v2}"}}'),
    ),
    alias("json-array", f"{API}/{ALIAS}", STRICTER, 500, body=text('[{{"name": "{name}"}}]')),
    alias(
        "utf-8-bom",
        f"{API}/{ALIAS}",
        STRICTER,
        200,
        body=text('{{"name": "{name}", "alias": "champion", "version": "{v2}"}}', prefix=b"\xef\xbb\xbf"),
    ),
    alias(
        "utf-16-body",
        f"{API}/{ALIAS}",
        STRICTER,
        200,
        body=text('{{"name": "{name}", "alias": "champion", "version": "{v2}"}}', "utf-16"),
    ),
    # Delete alias: PATCH/DELETE bodies are JSON whatever the content type.
    Variant(
        "delete-alias/json-body-no-content-type",
        "DELETE",
        f"{API}/{ALIAS}",
        DELETE_CHAMPION,
        GOVERNED,
        200,
        "delete_alias",
        {"alias": "champion"},
        headers={},
    ),
    Variant(
        "delete-alias/ajax-text-plain",
        "DELETE",
        f"{AJAX}/{ALIAS}",
        DELETE_CHAMPION,
        GOVERNED,
        200,
        "delete_alias",
        headers={"Content-Type": "text/plain"},
    ),
    Variant(
        "delete-alias/ui-sends-version",
        "DELETE",
        f"{API}/{ALIAS}",
        js(name="{name}", alias="champion", version="{v1}"),
        GOVERNED,
        200,
        "delete_alias",
    ),
    Variant(
        "delete-alias/query-string-only",
        "DELETE",
        f"{API}/{ALIAS}?name={{name}}&alias=champion",
        lambda m: None,
        REFUSED,
        400,
        status=400,
        headers={},
    ),
    # Stage transitions.
    Variant(
        "transition/production",
        "POST",
        f"{API}/model-versions/transition-stage",
        TO_PRODUCTION,
        GOVERNED,
        200,
        "transition",
        {"version": "{v2}", "stage": "Production"},
    ),
    Variant(
        "transition/lower-case-stage",
        "POST",
        f"{API}/model-versions/transition-stage",
        js(name="{name}", version="{v2}", stage="production"),
        GOVERNED,
        200,
        "transition",
        {"stage": "Production"},
    ),
    Variant(
        "transition/upper-case-staging",
        "POST",
        f"{AJAX}/model-versions/transition-stage",
        js(name="{name}", version="{v2}", stage="STAGING"),
        GOVERNED,
        200,
        "transition",
        {"stage": "Staging"},
    ),
    Variant(
        "transition/camel-case-archive",
        "POST",
        f"{API}/model-versions/transition-stage",
        js(name="{name}", version="{v2}", stage="Production", archiveExistingVersions=True),
        GOVERNED,
        200,
        "transition",
        {"archive_existing_versions": True},
    ),
    Variant(
        "transition/champion-to-archived",
        "POST",
        f"{API}/model-versions/transition-stage",
        js(name="{name}", version="{v1}", stage="Archived"),
        GOVERNED,
        200,
        "transition",
        {"version": "{v1}", "stage": "Archived"},
    ),
    Variant(
        "transition/champion-to-none",
        "POST",
        f"{API}/model-versions/transition-stage",
        js(name="{name}", version="{v1}", stage="none"),
        GOVERNED,
        200,
        "transition",
        {"stage": "None"},
    ),
    Variant(
        "transition/ajax-preview-encoded",
        "POST",
        "/ajax-api/2.0/preview/mlflow/model-versions/transition%2Dstage",
        TO_PRODUCTION,
        GOVERNED,
        404,
        "transition",
    ),
    Variant(
        "transition/snake-and-camel",
        "POST",
        f"{API}/model-versions/transition-stage",
        js(name="{name}", version="{v2}", stage="Production", archive_existing_versions=False, archiveExistingVersions=True),
        REFUSED,
        400,
        status=400,
    ),
    Variant(
        "transition/invalid-stage",
        "POST",
        f"{API}/model-versions/transition-stage",
        js(name="{name}", version="{v2}", stage="Prod"),
        REFUSED,
        400,
        status=400,
    ),
    Variant(
        "transition/version-as-number",
        "POST",
        f"{API}/model-versions/transition-stage",
        js(name="{name}", version=2, stage="Production"),
        REFUSED,
        400,
        status=400,
    ),
    Variant(
        "transition/archive-flag-as-string",
        "POST",
        f"{API}/model-versions/transition-stage",
        js(name="{name}", version="{v2}", stage="Production", archive_existing_versions="true"),
        REFUSED,
        400,
        status=400,
    ),
    # Rename (the model holds the champion). MLflow checks required fields by their snake_case key,
    # so it refuses ``newName`` (400); Checkpoint reads either spelling and governs it.
    Variant(
        "rename/canonical",
        "POST",
        f"{API}/registered-models/rename",
        js(name="{name}", new_name="{name}-renamed"),
        GOVERNED,
        200,
        "rename",
        {"new_name": "{name}-renamed"},
    ),
    Variant(
        "rename/camel-case-new-name",
        "POST",
        f"{API}/registered-models/rename",
        js(name="{name}", newName="{name}-renamed"),
        GOVERNED,
        400,
        "rename",
        {"new_name": "{name}-renamed"},
    ),
    Variant(
        "rename/into-prod-ajax",
        "POST",
        f"{AJAX}/registered-models/rename",
        js(name="{name}", new_name="prod.{name}-x"),
        GOVERNED,
        200,
        "rename",
        {"new_name": "prod.{name}-x"},
    ),
    Variant(
        "rename/snake-and-camel",
        "POST",
        f"{API}/registered-models/rename",
        js(name="{name}", new_name="{name}-a", newName="{name}-b"),
        REFUSED,
        400,
        status=400,
    ),
    Variant("rename/new-name-missing", "POST", f"{API}/registered-models/rename", js(name="{name}"), REFUSED, 400, status=400),
    # Deletes (not sent to MLflow directly: they would destroy the throwaway; MLflow serves them, §1.3).
    Variant(
        "delete-version/no-content-type",
        "DELETE",
        f"{API}/model-versions/delete",
        js(name="{name}", version="{v1}"),
        GOVERNED,
        None,
        "delete_version",
        {"version": "{v1}"},
        headers={},
    ),
    Variant(
        "delete-version/version-as-number",
        "DELETE",
        f"{API}/model-versions/delete",
        js(name="{name}", version=1),
        REFUSED,
        400,
        status=400,
        headers={},
    ),
    Variant(
        "delete-model/no-content-type",
        "DELETE",
        f"{API}/registered-models/delete",
        js(name="{name}"),
        GOVERNED,
        None,
        "delete_model",
        headers={},
    ),
    Variant(
        "delete-model/ajax-double-slash",
        "DELETE",
        f"/{AJAX}//registered-models/delete",
        js(name="{name}"),
        GOVERNED,
        None,
        "delete_model",
    ),
    # Tags.
    Variant(
        "version-tag/set",
        "POST",
        f"{API}/model-versions/set-tag",
        js(name="{name}", version="{v1}", key="validation_status", value="failed"),
        GOVERNED,
        200,
        "set_tag",
        {"key": "validation_status", "value": "failed"},
    ),
    Variant(
        "version-tag/delete-encoded-path",
        "DELETE",
        f"{API}/model-versions/delete%2Dtag",
        js(name="{name}", version="{v1}", key="validation_status"),
        GOVERNED,
        200,
        "delete_tag",
        headers={},
    ),
    Variant(
        "model-tag/set-ajax",
        "POST",
        f"{AJAX}/registered-models/set-tag",
        js(name="{name}", key="validation_status", value="failed"),
        GOVERNED,
        200,
        "set_tag",
        {"version": None},
    ),
    Variant(
        "model-tag/delete",
        "DELETE",
        f"{API}/registered-models/delete-tag",
        js(name="{name}", key="validation_status"),
        GOVERNED,
        200,
        "delete_tag",
    ),
    Variant(
        "model-tag/prompt-marker",
        "POST",
        f"{API}/registered-models/set-tag",
        js(name="{name}", key="mlflow.prompt.is_prompt", value="true"),
        GOVERNED,
        200,
        "set_tag",
    ),
    # New versions in a protected model: a copy (the UI's "Promote model") or a registration.
    Variant(
        "copy/into-prod",
        "POST",
        f"{API}/model-versions/create",
        js(name="prod.{name}", source="models:/{name}/{v1}"),
        GOVERNED,
        200,
        "create_version",
        {"name": "prod.{name}", "source": "models:/{name}/{v1}"},
    ),
    Variant(
        "copy/alias-source-ajax",
        "POST",
        f"{AJAX}/model-versions/create",
        js(name="prod.{name}", source="models:/{name}@champion"),
        GOVERNED,
        200,
        "create_version",
    ),
    Variant(
        "register/run-into-prod-camel-case",
        "POST",
        f"{API}/model-versions/create",
        js(name="prod.{name}", source="{source1}", runId="{run1}"),
        GOVERNED,
        200,
        "create_version",
        {"source": "{source1}", "body": {"run_id": "{run1}"}},
    ),
]

assert len({v.id for v in VARIANTS}) == len(VARIANTS)

# Where an MLflow 2.22 server answers the same bytes differently (Checkpoint's answer is the same).
# gunicorn (2.x) takes request-targets uvicorn (3.x) does not route, refuses a lower-case method
# and reads a chunked body; 2.x takes conflicting snake/camel fields (3.x refuses them, and
# Checkpoint is stricter there) and cannot copy from a ``models:/name@alias`` source (500).
MLFLOW2_ANSWERS = {
    "set-alias/fragment": 200,
    "set-alias/absolute-form": 200,
    "set-alias/no-leading-slash": 200,
    "set-alias/lower-case-method": 400,
    "set-alias/chunked-body": 200,
    "transition/snake-and-camel": 200,
    "rename/snake-and-camel": 200,
    "copy/alias-source-ajax": 500,
}
assert set(MLFLOW2_ANSWERS) <= {v.id for v in VARIANTS}


# -- fixtures ---------------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    app: object


@pytest.fixture(scope="module")
def sqlite_checkpoint(mlflow_server, tmp_path_factory) -> Iterator[Served]:
    """One Checkpoint on SQLite for the whole table: the table tests parsing, not the database."""
    data_dir = tmp_path_factory.mktemp("variants")
    url = migrated_sqlite(data_dir)
    application = create_app({"registry_url": mlflow_server.url, "database_url": url, "data_dir": data_dir})
    with served(application) as base:
        yield Served(base, application)


@pytest.fixture(scope="module")
def target(mlflow_server) -> tuple[Model, dict]:
    """The model every variant aims at through Checkpoint, and its state (which must not change)."""
    model = prepare(mlflow_server.url)
    return model, snapshot(mlflow_server.url, model)


@pytest.fixture(scope="module")
def throwaway(mlflow_server) -> tuple[Model, dict]:
    """A model in the same state, for sending each variant straight to MLflow."""
    model = prepare(mlflow_server.url)
    return model, snapshot(mlflow_server.url, model)


# -- the checks -------------------------------------------------------------------------------


def _fill_change(expected, model: Model):
    if isinstance(expected, dict):
        return {k: _fill_change(v, model) for k, v in expected.items()}
    return model.fill(expected) if isinstance(expected, str) else expected


def _request_count(app) -> int:
    return services(app).store.count()


def check_through_checkpoint(base: str, app, variant: Variant, model: Model) -> Answer:
    """Send ``variant`` to Checkpoint (``app`` served at ``base``) and check its answer."""
    before = _request_count(app)
    answer = send(
        base,
        variant.method,
        model.fill(variant.target),
        variant.body(model),
        {**ALICE, **variant.headers},
        chunked=variant.chunked,
    )
    shown = f"{answer.status} {answer.body[:400]!r}"
    if variant.expect == GOVERNED:
        assert answer.status == 403, shown
        payload = answer.json()
        assert payload["error_code"] == "PERMISSION_DENIED", shown
        assert payload["message"].startswith("Checkpoint: ") and "needs review" in payload["message"], shown
        expected_change = _fill_change({"kind": variant.kind, **variant.change}, model)
        if variant.ui:
            info = payload["checkpoint"]
            assert info["action"] == "new_request", shown
            assert info["url"].startswith(f"{base}/checkpoint/requests/new?change="), shown
            assert answer.headers["X-Checkpoint-New-Request"] == info["url"]
            assert "X-Checkpoint-Request" not in answer.headers
            token = info["url"].split("change=", 1)[1]
            decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            assert decoded == info["change"]
            change = info["change"]
            assert _request_count(app) == before, "a UI call must not open a request"
        else:
            request_id = answer.headers["X-Checkpoint-Request"]
            assert payload["checkpoint"]["request_id"] == int(request_id)
            assert f"promote request #{request_id}" in payload["message"]
            opened = api(base, "GET", f"/requests/{request_id}").json()
            assert opened["state"] == "open" and opened["author"] == "alice", opened
            change = opened["change"]
        for key, value in expected_change.items():
            if isinstance(value, dict):
                assert {k: change[key].get(k) for k in value} == value, (key, change)
            else:
                assert change.get(key) == value, (key, change)
        if variant.kind != "create_version":
            assert change["name"] == model.name, change
    elif variant.expect == REFUSED:
        assert answer.status == variant.status, shown
    else:  # STRICTER
        assert answer.status == 400, shown
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", shown
    if variant.expect != GOVERNED:
        assert _request_count(app) == before, "a refused call must not open a request"
    return answer


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.id for v in VARIANTS])
def test_variant(variant, sqlite_checkpoint, target, throwaway, mlflow_server):
    model, state = target
    answer = check_through_checkpoint(sqlite_checkpoint.url, sqlite_checkpoint.app, variant, model)

    assert snapshot(mlflow_server.url, model) == state, f"{variant.id} changed MLflow's registry through Checkpoint"

    if variant.mlflow is None:
        return
    spare, spare_state = throwaway
    direct = send(
        mlflow_server.url,
        variant.method,
        spare.fill(variant.target),
        variant.body(spare),
        variant.headers,
        chunked=variant.chunked,
    )
    expected = MLFLOW2_ANSWERS.get(variant.id, variant.mlflow) if mlflow_major(mlflow_server) < 3 else variant.mlflow
    if direct.status == 200 and expected != 200:
        restore(mlflow_server.url, spare, spare_state)  # so one surprise does not fail the variants after it
    assert direct.status == expected, f"MLflow itself answered {direct.status} {direct.body[:300]!r}"
    if variant.expect == REFUSED and not (direct.status == 200 and expected != variant.mlflow):
        assert direct.status // 100 == answer.status // 100  # (on 2.x Checkpoint refuses what that server takes)
    if direct.status == 200:
        restore(mlflow_server.url, spare, spare_state)
        assert snapshot(mlflow_server.url, spare) == spare_state
    else:
        assert snapshot(mlflow_server.url, spare) == spare_state, f"MLflow answered {direct.status} yet changed state"


BOTH_DATABASES = [
    v
    for v in VARIANTS
    if v.id
    in (
        "set-alias/api-2.0",
        "set-alias/ajax-api-2.0",
        "set-alias/fragment",
        "transition/camel-case-archive",
        "set-alias/duplicated-json-key",
    )
]


@pytest.mark.parametrize("variant", BOTH_DATABASES, ids=[v.id for v in BOTH_DATABASES])
def test_variant_on_each_database(variant, live_checkpoint, target, mlflow_server):
    """A few variants on Checkpoint served on SQLite and on PostgreSQL."""
    model, state = target
    check_through_checkpoint(live_checkpoint.url, live_checkpoint.app, variant, model)
    assert snapshot(mlflow_server.url, model) == state


def test_a_retried_governed_call_finds_the_same_request(sqlite_checkpoint, target, mlflow_server):
    """Spellings of one change by one author share one request (the client's retries, a re-run)."""
    model, state = target
    ids = set()
    for path in (f"{API}/{ALIAS}", f"/{API}//{ALIAS}", f"{API}/registered-models%2Falias"):
        answer = send(sqlite_checkpoint.url, "POST", path, SET_CHAMPION(model), {**ALICE, **JSON})
        assert answer.status == 403, answer.body
        ids.add(answer.headers["X-Checkpoint-Request"])
    assert len(ids) == 1
    assert snapshot(mlflow_server.url, model) == state
