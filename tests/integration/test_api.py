"""The JSON API under /checkpoint/api/v1, over real HTTP, on SQLite and PostgreSQL.

Every bad input is answered 4xx in MLflow's error shape ``{error_code, message}`` and
leaves the database exactly as it was (every row of every table, compared before and
after). The happy paths: create (and its dedupe), list with filters and cursor paging,
get, edit, comment, and ``/which``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests
import sqlalchemy as sa
from mlflow import MlflowClient

from checkpoint import create_app
from checkpoint.services import services
from tests.support.databases import migrated_database
from tests.support.governed import api, make_model, unique
from tests.support.serving import served

TABLES = ("promote_requests", "reviews", "comments", "events")
MISSING = 987654


@dataclass
class Site:
    """One Checkpoint on one database, seeded with a request in each interesting state."""

    url: str
    app: object
    engine: sa.Engine
    model: str
    v1: str
    v2: str
    ids: dict[str, int] = field(default_factory=dict)
    spec: dict = field(default_factory=dict)  # the served OpenAPI document


def _database(kind: str, request, tmp_path_factory) -> Iterator[str]:
    yield from migrated_database(kind, request, tmp_path_factory.mktemp("api-db"), prefix="cp_api")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, mlflow_server, tmp_path_factory) -> Iterator[Site]:
    """Served once per database for the whole module: the bad inputs only read its seed."""
    databases = _database(request.param, request, tmp_path_factory)
    database_url = next(databases)
    application = create_app(
        {"registry_url": mlflow_server.url, "database_url": database_url, "data_dir": tmp_path_factory.mktemp("api")}
    )
    with served(application) as base:
        client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
        name, (v1, v2) = make_model(mlflow_server.url)
        client.set_registered_model_alias(name, "champion", v1)
        client.transition_model_version_stage(name, v1, "Production")
        here = Site(base, application, services(application).engine, name, v1, v2)

        def create(change: dict) -> int:
            answer = api(here.url, "POST", "/requests", user="alice", json={"change": change})
            assert answer.status_code == 201, answer.text
            return answer.json()["id"]

        here.ids["open"] = create({"kind": "set_alias", "name": name, "alias": "champion", "version": v2})
        here.ids["rejected"] = create({"kind": "transition", "name": name, "version": v2, "stage": "Staging"})
        assert (
            api(here.url, "POST", f"/requests/{here.ids['rejected']}/reviews", user="dave", json={"verdict": "reject"}).json()[
                "state"
            ]
            == "rejected"
        )
        here.ids["applied"] = create(
            {"kind": "set_tag", "name": name, "version": v1, "key": "validation_status", "value": "passed"}
        )
        assert (
            api(here.url, "POST", f"/requests/{here.ids['applied']}/reviews", user="dave", json={"verdict": "approve"}).json()[
                "state"
            ]
            == "applied"
        )
        here.ids["missing"] = MISSING
        here.spec = requests.get(f"{here.url}/checkpoint/api/v1/openapi.json", timeout=30).json()
        yield here
    next(databases, None)


def dump(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every table, in id order."""
    with engine.connect() as conn:
        return {table: [tuple(row) for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))] for table in TABLES}


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# -- bad inputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One bad call: ``path`` and ``json`` may name the seed ({open}, {model}, {v2}...)."""

    method: str
    path: str
    status: int
    json: object = None
    data: bytes | str | None = None
    content_type: str | None = None
    user: str = "bob"
    error_code: str | None = None


def _set_alias(**override) -> dict:
    return {"change": {"kind": "set_alias", "name": "{model}", "alias": "champion", "version": "{v2}", **override}}


BAD = {
    # ids and query strings
    "get-unknown-id": Bad("GET", "/requests/{missing}", 404, error_code="RESOURCE_DOES_NOT_EXIST"),
    "get-non-integer-id": Bad("GET", "/requests/abc", 404),
    "get-negative-id": Bad("GET", "/requests/-1", 404),
    "get-id-zero": Bad("GET", "/requests/0", 404),
    "get-id-beyond-integer-range": Bad("GET", "/requests/99999999999999999999", 404),
    "review-id-beyond-integer-range": Bad("POST", "/requests/9223372036854775808/reviews", 404, json={"verdict": "approve"}),
    "retry-id-beyond-integer-range": Bad("POST", "/requests/4294967296/retry", 404),
    "list-bad-state": Bad("GET", "/requests?state=merged", 400),
    "list-limit-zero": Bad("GET", "/requests?limit=0", 400),
    "list-limit-201": Bad("GET", "/requests?limit=201", 400),
    "list-limit-negative": Bad("GET", "/requests?limit=-1", 400),
    "list-limit-not-a-number": Bad("GET", "/requests?limit=x", 400),
    "list-limit-superscript-two": Bad("GET", "/requests?limit=%C2%B2", 400),
    "list-cursor-garbage": Bad("GET", "/requests?cursor=%25%25not-base64%25%25", 400),
    "list-cursor-base64-of-wrong-content": Bad("GET", f"/requests?cursor={cursor_of('hello world')}", 400),
    "list-cursor-non-numeric-id": Bad("GET", f"/requests?cursor={cursor_of('id:abc')}", 400),
    "list-nul-in-search": Bad("GET", "/requests?q=a%00b", 400),
    "list-nul-in-model": Bad("GET", "/requests?model=%00", 400),
    "list-nul-in-author": Bad("GET", "/requests?author=%00", 400),
    # create: the body
    "create-non-json-body": Bad("POST", "/requests", 400, data="{not json", content_type="application/json"),
    "create-json-as-text-plain": Bad("POST", "/requests", 400, data='{"change": {}}', content_type="text/plain"),
    "create-json-array": Bad("POST", "/requests", 400, json=[_set_alias()]),
    "create-json-string": Bad("POST", "/requests", 400, json="change"),
    "create-empty-body": Bad("POST", "/requests", 400, data="", content_type="application/json"),
    "create-unknown-field": Bad("POST", "/requests", 400, json={**_set_alias(), "colour": "red"}),
    "create-title-number": Bad("POST", "/requests", 400, json={**_set_alias(), "title": 5}),
    "create-description-list": Bad("POST", "/requests", 400, json={**_set_alias(), "description": ["a"]}),
    "create-title-301-chars": Bad("POST", "/requests", 400, json={**_set_alias(), "title": "t" * 301}),
    "create-nul-in-description": Bad("POST", "/requests", 400, json={**_set_alias(), "description": "a\x00b"}),
    "create-nul-in-title": Bad("POST", "/requests", 400, json={**_set_alias(), "title": "a\x00b"}),
    "create-huge-body": Bad(
        "POST", "/requests", 413, data='{"title": "' + "x" * (1024 * 1024 + 10) + '"}', content_type="application/json"
    ),
    "create-reviewers-not-a-list": Bad("POST", "/requests", 400, json={**_set_alias(), "reviewers": "dave"}),
    "create-self-as-reviewer": Bad("POST", "/requests", 400, json={**_set_alias(), "reviewers": ["bob"]}),
    # create: the change
    "create-without-change": Bad("POST", "/requests", 400, json={"title": "x"}),
    "create-change-not-object": Bad("POST", "/requests", 400, json={"change": "set_alias"}),
    "create-change-without-kind": Bad("POST", "/requests", 422, json={"change": {"name": "{model}", "version": "{v2}"}}),
    "create-unknown-kind": Bad("POST", "/requests", 422, json=_set_alias(kind="promote")),
    "create-change-missing-version": Bad(
        "POST", "/requests", 422, json={"change": {"kind": "set_alias", "name": "{model}", "alias": "champion"}}
    ),
    "create-version-does-not-exist": Bad(
        "POST", "/requests", 422, json=_set_alias(version="999"), error_code="RESOURCE_DOES_NOT_EXIST"
    ),
    "create-model-does-not-exist": Bad("POST", "/requests", 422, json=_set_alias(name="no-such-model-x9", version="1")),
    "create-version-not-a-number": Bad("POST", "/requests", 422, json=_set_alias(version="abc")),
    "create-invalid-stage": Bad(
        "POST", "/requests", 422, json={"change": {"kind": "transition", "name": "{model}", "version": "{v2}", "stage": "Prod"}}
    ),
    "create-archive-flag-not-boolean": Bad(
        "POST",
        "/requests",
        422,
        json={
            "change": {
                "kind": "transition",
                "name": "{model}",
                "version": "{v2}",
                "stage": "Production",
                "archive_existing_versions": "yes",
            }
        },
    ),
    "create-name-not-a-string": Bad("POST", "/requests", 422, json=_set_alias(name=5)),
    "create-nul-in-model-name": Bad(
        "POST", "/requests", 400, json={"title": "t", "change": {"kind": "delete_alias", "name": "a\x00b", "alias": "champion"}}
    ),
    "create-model-name-600-chars": Bad(
        "POST", "/requests", 400, json={"title": "t", "change": {"kind": "delete_alias", "name": "m" * 600, "alias": "champion"}}
    ),
    "create-alias-700-chars": Bad(
        "POST", "/requests", 400, json={"title": "t", "change": {"kind": "delete_alias", "name": "{model}", "alias": "a" * 700}}
    ),
    "create-user-name-300-chars": Bad(
        "POST",
        "/requests",
        400,
        json={"change": {"kind": "delete_alias", "name": "{model}", "alias": "champion"}},
        user="u" * 300,
    ),
    # edit
    "edit-unknown-id": Bad("PATCH", "/requests/{missing}", 404, json={"title": "x"}, user="alice"),
    "edit-by-non-author": Bad("PATCH", "/requests/{open}", 403, json={"title": "x"}, error_code="PERMISSION_DENIED"),
    "edit-empty-title": Bad("PATCH", "/requests/{open}", 400, json={"title": ""}, user="alice"),
    "edit-blank-title": Bad("PATCH", "/requests/{open}", 400, json={"title": "   "}, user="alice"),
    "edit-title-301-chars": Bad("PATCH", "/requests/{open}", 400, json={"title": "t" * 301}, user="alice"),
    "edit-title-number": Bad("PATCH", "/requests/{open}", 400, json={"title": 7}, user="alice"),
    "edit-nul-in-description": Bad("PATCH", "/requests/{open}", 400, json={"description": "\x00"}, user="alice"),
    "edit-unknown-field": Bad("PATCH", "/requests/{open}", 400, json={"state": "applied"}, user="alice"),
    "edit-json-array": Bad("PATCH", "/requests/{open}", 400, json=["title"], user="alice"),
    "edit-rejected-request": Bad(
        "PATCH", "/requests/{rejected}", 409, json={"title": "x"}, user="alice", error_code="INVALID_STATE"
    ),
    # reviews
    "review-unknown-id": Bad("POST", "/requests/{missing}/reviews", 404, json={"verdict": "approve"}),
    "review-verdict-maybe": Bad("POST", "/requests/{open}/reviews", 400, json={"verdict": "maybe"}),
    "review-verdict-missing": Bad("POST", "/requests/{open}/reviews", 400, json={"comment": "lgtm"}),
    "review-verdict-number": Bad("POST", "/requests/{open}/reviews", 400, json={"verdict": 1}),
    "review-comment-list": Bad("POST", "/requests/{open}/reviews", 400, json={"verdict": "approve", "comment": ["a"]}),
    "review-nul-in-comment": Bad("POST", "/requests/{open}/reviews", 400, json={"verdict": "approve", "comment": "\x00"}),
    "review-unknown-field": Bad("POST", "/requests/{open}/reviews", 400, json={"verdict": "approve", "force": True}),
    "review-self-approval": Bad(
        "POST", "/requests/{open}/reviews", 403, json={"verdict": "approve"}, user="alice", error_code="PERMISSION_DENIED"
    ),
    # No Authorization header: a browser's cookie call, which must carry the CSRF token.
    "review-without-credentials-or-csrf-token": Bad(
        "POST", "/requests/{open}/reviews", 400, json={"verdict": "approve"}, user=""
    ),
    "review-reviewer-name-300-chars": Bad("POST", "/requests/{open}/reviews", 400, json={"verdict": "approve"}, user="r" * 300),
    "review-applied-request": Bad(
        "POST", "/requests/{applied}/reviews", 409, json={"verdict": "approve"}, error_code="INVALID_STATE"
    ),
    "review-rejected-request": Bad("POST", "/requests/{rejected}/reviews", 409, json={"verdict": "reject"}),
    # comments
    "comment-unknown-id": Bad("POST", "/requests/{missing}/comments", 404, json={"body": "hi"}),
    "comment-body-list": Bad("POST", "/requests/{open}/comments", 400, json={"body": ["hi"]}),
    "comment-body-missing": Bad("POST", "/requests/{open}/comments", 400, json={}),
    "comment-body-blank": Bad("POST", "/requests/{open}/comments", 400, json={"body": " \n "}),
    "comment-nul-in-body": Bad("POST", "/requests/{open}/comments", 400, json={"body": "a\x00"}),
    "comment-body-65537-chars": Bad("POST", "/requests/{open}/comments", 400, json={"body": "b" * 65537}),
    "comment-non-json-body": Bad("POST", "/requests/{open}/comments", 400, data="hi", content_type="text/plain"),
    # withdraw, retry
    "withdraw-unknown-id": Bad("POST", "/requests/{missing}/withdraw", 404, user="alice"),
    "withdraw-by-non-author": Bad("POST", "/requests/{open}/withdraw", 403, error_code="PERMISSION_DENIED"),
    "withdraw-applied-request": Bad("POST", "/requests/{applied}/withdraw", 409, user="alice"),
    "retry-unknown-id": Bad("POST", "/requests/{missing}/retry", 404),
    "retry-open-request": Bad("POST", "/requests/{open}/retry", 409, error_code="INVALID_STATE"),
    "retry-applied-request": Bad("POST", "/requests/{applied}/retry", 409),
    # methods and paths
    "delete-a-request": Bad("DELETE", "/requests/{open}", 405),
    "put-the-list": Bad("PUT", "/requests", 405),
    "get-reviews": Bad("GET", "/requests/{open}/reviews", 405),
    "get-withdraw": Bad("GET", "/requests/{open}/withdraw", 405),
    "unknown-api-path": Bad("GET", "/nothing-here", 404),
    # which
    "which-without-model": Bad("GET", "/which?alias=champion", 400),
    "which-neither-stage-nor-alias": Bad("GET", "/which?model={model}", 400),
    "which-both-stage-and-alias": Bad("GET", "/which?model={model}&stage=Production&alias=champion", 400),
    "which-invalid-stage": Bad("GET", "/which?model={model}&stage=Prod", 400),
}


def _fill(value, site: Site):
    """Put the seed's names and ids into a case's path or body."""
    names = {"model": site.model, "v1": site.v1, "v2": site.v2, **{k: str(v) for k, v in site.ids.items()}}
    if isinstance(value, str):
        for key, text in names.items():
            value = value.replace("{" + key + "}", text)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, site) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, site) for v in value]
    return value


def call(site: Site, case: Bad) -> requests.Response:
    kwargs: dict = {}
    if case.json is not None:
        kwargs["json"] = _fill(case.json, site)
    if case.data is not None:
        kwargs["data"] = case.data.encode() if isinstance(case.data, str) else case.data
        kwargs["headers"] = {"Content-Type": case.content_type or "application/octet-stream"}
    auth = (case.user, "x") if case.user else None
    return requests.request(case.method, f"{site.url}/checkpoint/api/v1{_fill(case.path, site)}", auth=auth, timeout=60, **kwargs)


def documented_statuses(site: Site, method: str, path: str) -> set[str] | None:
    """The statuses the OpenAPI document lists for the operation this call reaches (None: no route)."""
    adapter = site.app.url_map.bind("127.0.0.1")
    try:
        rule, _ = adapter.match(f"/checkpoint/api/v1{path.split('?')[0]}", method=method, return_rule=True)
    except Exception:  # noqa: BLE001 - werkzeug's NotFound / MethodNotAllowed: the call reached no operation
        return None
    route = rule.rule.removeprefix("/checkpoint/api/v1").replace("<int:", "{").replace(">", "}")
    return set(site.spec["paths"][route][method.lower()]["responses"])


@pytest.mark.parametrize("case", list(BAD.values()), ids=list(BAD))
def test_bad_input_is_a_4xx_in_mlflows_shape_and_changes_nothing(site, case):
    before = dump(site.engine)
    answer = call(site, case)
    after = dump(site.engine)
    print(answer.status_code, answer.text[:300])
    assert answer.status_code == case.status, answer.text[:500]
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error_code", "message"}, body
    assert isinstance(body["error_code"], str) and body["error_code"].isupper()
    assert isinstance(body["message"], str) and body["message"].strip()
    if case.error_code:
        assert body["error_code"] == case.error_code
    assert after == before, "a refused call changed the database"
    documented = documented_statuses(site, case.method, _fill(case.path, site))
    if documented is not None and case.status != 413:  # 413 comes from the server's body limit, for every route
        assert str(case.status) in documented, f"{case.status} is not in the OpenAPI document's {sorted(documented)}"


def test_bad_input_table_is_big_enough():
    assert len(BAD) >= 30
    assert {c.status for c in BAD.values()} >= {400, 403, 404, 405, 409, 413, 422}


# -- happy paths -----------------------------------------------------------------------


def delete_alias(model: str, alias: str) -> dict:
    """A change that needs no version (so no registry set-up): cheap to open many of."""
    return {"kind": "delete_alias", "name": model, "alias": alias}


def test_create_then_the_same_create_returns_the_open_request(site):
    change = {"kind": "set_alias", "name": site.model, "alias": "challenger", "version": site.v2}
    before = len(dump(site.engine)["promote_requests"])
    first = api(site.url, "POST", "/requests", user="alice", json={"change": change, "title": "try v2", "description": "**why**"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["created"] is True and body["state"] == "open" and body["author"] == "alice"
    assert (body["title"], body["description"], body["target"]) == ("try v2", "**why**", "alias:challenger")
    assert body["url"].endswith(f"/checkpoint/requests/{body['id']}")
    assert body["challenger"]["version"] == site.v2 and body["champion"] is None
    assert [e["kind"] for e in body["events"]] == ["opened"]

    again = api(site.url, "POST", "/requests", user="alice", json={"change": change, "title": "another title"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == body["id"] and again.json()["created"] is False
    assert again.json()["title"] == "try v2"  # the open request, untouched
    assert len(dump(site.engine)["promote_requests"]) == before + 1

    carols = api(site.url, "POST", "/requests", user="carol", json={"change": change, "title": ""})
    assert carols.status_code == 201 and carols.json()["id"] != body["id"], carols.text
    assert carols.json()["title"] == f"Moving alias 'challenger' of '{site.model}' to version {site.v2}"  # the default
    assert len(dump(site.engine)["promote_requests"]) == before + 2


def test_list_filters_and_cursor_pages(site):
    model_a, model_b, tag = unique("list-a"), unique("list-b"), unique("tag")
    made = []
    for i in range(6):
        answer = api(
            site.url,
            "POST",
            "/requests",
            user="alice",
            json={"change": delete_alias(model_a, f"alias-{i}"), "title": f"{tag} #{i}"},
        )
        assert answer.status_code == 201, answer.text
        made.append(answer.json()["id"])
    for i, title in enumerate((f"{tag} 100% sure", f"{tag} 1000 sure")):
        made.append(
            api(
                site.url, "POST", "/requests", user="alice", json={"change": delete_alias(model_a, f"pct-{i}"), "title": title}
            ).json()["id"]
        )
    carols = [
        api(site.url, "POST", "/requests", user="carol", json={"change": delete_alias(model_b, f"b-{i}")}).json()["id"]
        for i in range(2)
    ]
    assert api(site.url, "POST", f"/requests/{carols[0]}/withdraw", user="carol").json()["state"] == "withdrawn"

    def ids(query: str) -> list[int]:
        answer = api(site.url, "GET", f"/requests?{query}")
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()["requests"]]

    assert ids(f"model={model_a}") == sorted(made, reverse=True)  # newest first
    assert ids(f"model={model_b}&author=carol") == sorted(carols, reverse=True)
    assert ids(f"model={model_b}&author=alice") == []
    assert ids(f"model={model_b}&state=withdrawn") == [carols[0]]
    assert ids(f"model={model_b}&state=open") == [carols[1]]
    assert ids(f"model={model_a}&target=alias:alias-3") == [made[3]]
    assert ids(f"q={tag}") == sorted(made, reverse=True)
    assert ids(f"q={tag.upper()}%20%231") == [made[1]]  # case-insensitive
    assert ids("q=100%25") == [made[6]]  # '%' is a character, not a wildcard
    assert ids(f"q={tag}%200") == []  # no title has "<tag> 0"
    listed = api(site.url, "GET", f"/requests?model={model_a}&limit=1").json()["requests"][0]
    assert listed["id"] == made[-1] and "events" not in listed  # the list is the short form

    # Three pages of 3, 3 and 2; a request opened meanwhile does not shift the pages.
    pages, cursor = [], None
    while True:
        query = f"model={model_a}&limit=3" + (f"&cursor={cursor}" if cursor else "")
        answer = api(site.url, "GET", f"/requests?{query}").json()
        pages.append([r["id"] for r in answer["requests"]])
        if len(pages) == 1:
            newer = api(site.url, "POST", "/requests", user="alice", json={"change": delete_alias(model_a, "late")})
            assert newer.status_code == 201
        cursor = answer["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"
    assert [len(p) for p in pages] == [3, 3, 2]
    flat = [i for page in pages for i in page]
    assert flat == sorted(made, reverse=True)  # stable order, no duplicates, no gaps
    # A cursor beyond every id is "from the newest", not an error.
    beyond = ids(f"model={model_a}&cursor={cursor_of('id:99999999999999999999')}")
    assert beyond == sorted([*made, newer.json()["id"]], reverse=True)


def test_get_edit_and_comment(site):
    model = unique("edit")
    created = api(site.url, "POST", "/requests", user="alice", json={"change": delete_alias(model, "champion")}).json()
    rid = created["id"]
    got = api(site.url, "GET", f"/requests/{rid}")
    assert got.status_code == 200
    full = got.json()
    assert {"reviews", "comments", "events"} <= set(full) and full["reviews"] == [] and full["comments"] == []
    assert full["api_url"].endswith(f"/checkpoint/api/v1/requests/{rid}")

    edited = api(
        site.url, "PATCH", f"/requests/{rid}", user="alice", json={"title": "  drop the alias  ", "description": "because"}
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["title"], edited.json()["description"]) == ("drop the alias", "because")
    only_description = api(site.url, "PATCH", f"/requests/{rid}", user="alice", json={"description": ""})
    assert (only_description.json()["title"], only_description.json()["description"]) == ("drop the alias", "")

    commented = api(site.url, "POST", f"/requests/{rid}/comments", user="bob", json={"body": "are you sure?"})
    assert commented.status_code == 201, commented.text
    comments = api(site.url, "GET", f"/requests/{rid}").json()["comments"]
    assert [(c["author"], c["body"]) for c in comments] == [("bob", "are you sure?")]
    kinds = [e["kind"] for e in api(site.url, "GET", f"/requests/{rid}").json()["events"]]
    assert kinds == ["opened", "edited", "edited", "commented"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("alias=champion", "v1"),
        ("alias=no-such-alias", None),
        ("stage=production", "v1"),  # any case, as MLflow takes it
        ("stage=Archived", None),
    ],
    ids=["alias", "alias-unset", "stage-lowercase", "stage-empty"],
)
def test_which_version_holds_it(site, query, expected):
    answer = api(site.url, "GET", f"/which?model={site.model}&{query}")
    assert answer.status_code == 200, answer.text
    want = getattr(site, expected) if expected else None
    assert answer.json()["version"] == want
    assert answer.json()["versions"] == ([want] if want else [])
    assert answer.json()["model"] == site.model
