"""Hostile input against Checkpoint's JSON API, its forms and the governed MLflow routes, on
SQLite and PostgreSQL: every crafted call gets a 4xx whose message names the problem, and the
whole database (every row of every table, and SQLite's ``iterdump()``) is identical before and
after. Calls on governed routes also leave MLflow's registry as it was.

tests/integration/test_api.py holds the plain bad-input table (missing fields, wrong states, limits); this
module adds what a hostile caller sends: deep JSON, lone surrogates, look-alike unicode, NUL
bytes, invalid UTF-8, bodies above the 1 MiB limit (declared, chunked and lied about), ids at
the integer boundaries, forged cursors, wrong content types, and path spellings against the
governed-route rules that tests/integration/test_governed_variants.py does not already send.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from checkpoint import create_app
from checkpoint.services import services
from tests.support.databases import migrated_database
from tests.support.governed import api, make_model
from tests.support.hostile import database_dump, form_session, registry_state
from tests.support.proxy import raw_request
from tests.support.serving import served

API = "/checkpoint/api/v1"
MLFLOW = "/api/2.0/mlflow"
ONE_MIB = 1024 * 1024


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:x".encode()).decode()


@dataclass
class Site:
    url: str
    engine: sa.Engine
    mlflow_url: str
    fill: dict[str, str]
    cookie: str = ""
    token: str = ""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, mlflow_server, tmp_path_factory) -> Iterator[Site]:
    """Checkpoint on one database for the module, seeded with an open, an applied and a rejected
    request (so the dump compares real rows), in front of a model with a champion in Production."""
    databases = migrated_database(request.param, request, tmp_path_factory.mktemp("hostile-db"), prefix="cp_hostile")
    database_url = next(databases)
    application = create_app(
        {"registry_url": mlflow_server.url, "database_url": database_url, "data_dir": tmp_path_factory.mktemp("hostile")}
    )
    with served(application) as base:
        name, (v1, v2) = make_model(mlflow_server.url)
        client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
        client.set_registered_model_alias(name, "champion", v1)
        client.transition_model_version_stage(name, v1, "Production")
        client.set_model_version_tag(name, v1, "validation_status", "passed")

        def create(change: dict, user: str = "alice") -> int:
            answer = api(base, "POST", "/requests", user=user, json={"change": change})
            assert answer.status_code == 201, answer.text
            return answer.json()["id"]

        opened = create({"kind": "set_alias", "name": name, "alias": "champion", "version": v2})
        rejected = create({"kind": "transition", "name": name, "version": v2, "stage": "Staging"})
        assert api(base, "POST", f"/requests/{rejected}/reviews", user="dave", json={"verdict": "reject"}).ok
        applied = create({"kind": "set_tag", "name": name, "version": v2, "key": "validation_status", "value": "passed"})
        approved = api(base, "POST", f"/requests/{applied}/reviews", user="dave", json={"verdict": "approve"})
        assert approved.json()["state"] == "applied", approved.text
        here = Site(
            base,
            services(application).engine,
            mlflow_server.url,
            {"model": name, "v1": v1, "v2": v2, "open": str(opened), "applied": str(applied)},
        )
        forms = form_session(base)
        here.cookie, here.token = forms.cookie, forms.token
        yield here
    next(databases, None)


# -- the table ---------------------------------------------------------------------------------

Body = Callable[[Site], bytes] | bytes | None


@dataclass(frozen=True)
class Hostile:
    """One crafted call. ``target`` and string bodies are templates over the seed ({model},
    {v1}, {v2}, {open}, {applied}, {csrf}); ``mentions`` must all appear in the answer's message."""

    method: str
    target: str
    status: int
    mentions: tuple[str, ...]
    body: Body = None
    content_type: str | None = "application/json"
    user: str | None = "bob"
    form: bool = False  # a browser form: session cookie, and ``{csrf}`` in the body
    headers: tuple[tuple[str, str], ...] = ()
    chunked: bool = False


def j(payload: object) -> Callable[[Site], bytes]:
    """A JSON body; string values (and keys) are templates over the seed. Surrogates survive as escapes."""

    def fill(value, seed: dict):
        if isinstance(value, str):
            return value.format_map(_Seed(seed))
        if isinstance(value, dict):
            return {fill(k, seed): fill(v, seed) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v, seed) for v in value]
        return value

    return lambda site: json.dumps(fill(payload, site.fill)).encode()


class _Seed(dict):
    def __missing__(self, key: str) -> str:  # leave {unknown} braces alone
        return "{" + key + "}"


def raw(template: bytes) -> Callable[[Site], bytes]:
    """Bytes written by hand (invalid UTF-8, NaN, huge numbers); ``{model}`` etc. are filled."""
    return lambda site: template.replace(b"{model}", site.fill["model"].encode()).replace(b"{v2}", site.fill["v2"].encode())


def deep(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


SET_CHAMPION = {"kind": "set_alias", "name": "{model}", "alias": "champion", "version": "{v2}"}
DEEP_OBJECT = b'{"a":' * 30_000 + b"1" + b"}" * 30_000
FORM = "application/x-www-form-urlencoded"
NEW_FORM = "change={token}&title=t&description=&reviewers=&csrf_token={{csrf}}"
NESTED = "nested too deeply"


def new_form(token: str, **fields: str) -> Callable[[Site], bytes]:
    """The new-request form with ``change`` = ``token`` (base64 JSON) and the given fields."""
    values = {"change": token, "title": "t", "description": "", "reviewers": "", **fields}

    def build(site: Site) -> bytes:
        from urllib.parse import urlencode

        filled = {k: v.format_map(_Seed(site.fill)) for k, v in values.items()}
        return urlencode({**filled, "csrf_token": site.token}).encode()

    return build


def change_token(change: dict) -> Callable[[Site], str]:
    return lambda site: b64(
        json.dumps({k: v.format_map(_Seed(site.fill)) if isinstance(v, str) else v for k, v in change.items()}).encode()
    )


def token_form(change: dict, **fields: str) -> Callable[[Site], bytes]:
    return lambda site: new_form(change_token(change)(site), **fields)(site)


HOSTILE: dict[str, Hostile] = {
    # -- deep JSON: Python's parser raises RecursionError, which is not a ValueError --
    "api-create-deep-array": Hostile("POST", f"{API}/requests", 400, (NESTED,), b'{"change": ' + deep(100_000) + b"}"),
    "api-create-deep-object": Hostile("POST", f"{API}/requests", 400, (NESTED,), DEEP_OBJECT),
    "api-comment-deep-array": Hostile("POST", f"{API}/requests/{{open}}/comments", 400, (NESTED,), deep(200_000)),
    "api-review-deep-in-comment": Hostile(
        "POST", f"{API}/requests/{{open}}/reviews", 400, (NESTED,), b'{"verdict": "approve", "comment": ' + deep(50_000) + b"}"
    ),
    # -- lone surrogates (valid JSON escapes, not text any database stores) --
    "api-create-surrogate-title": Hostile(
        "POST", f"{API}/requests", 400, ("surrogate",), j({"change": SET_CHAMPION, "title": "go \ud800"})
    ),
    "api-create-surrogate-alias": Hostile(
        "POST", f"{API}/requests", 400, ("surrogate",), j({"change": {**SET_CHAMPION, "alias": "prod\udfff"}})
    ),
    "api-create-surrogate-in-key": Hostile(
        "POST", f"{API}/requests", 400, ("surrogate",), j({"change": SET_CHAMPION, "ti\udc00tle": "x"})
    ),
    "api-comment-surrogate": Hostile("POST", f"{API}/requests/{{open}}/comments", 400, ("surrogate",), j({"body": "\udc80"})),
    "api-edit-surrogate-description": Hostile(
        "PATCH", f"{API}/requests/{{open}}", 400, ("surrogate",), j({"description": "a\ud83d"}), user="alice"
    ),
    # -- look-alike unicode is not normalised into a valid value --
    "api-create-stage-zero-width": Hostile(
        "POST",
        f"{API}/requests",
        422,
        ("stage",),
        j({"change": {"kind": "transition", "name": "{model}", "version": "{v2}", "stage": "Production\u200b"}}),
    ),
    "api-create-kind-rtl-override": Hostile(
        "POST", f"{API}/requests", 422, ("change.kind",), j({"change": {**SET_CHAMPION, "kind": "set_alias\u202e"}})
    ),
    "api-review-verdict-zero-width": Hostile(
        "POST", f"{API}/requests/{{open}}/reviews", 400, ("verdict",), j({"verdict": "approve\u200b"})
    ),
    "api-review-verdict-fullwidth": Hostile(
        "POST", f"{API}/requests/{{open}}/reviews", 400, ("verdict",), j({"verdict": "\uff41pprove"})
    ),
    "api-create-model-name-zero-width": Hostile(
        "POST", f"{API}/requests", 422, ("no version",), j({"change": {**SET_CHAMPION, "name": "{model}\u200b"}})
    ),
    "api-list-state-zero-width": Hostile("GET", f"{API}/requests?state=open%E2%80%8B", 400, ("state",), None),
    "api-list-limit-fullwidth-digit": Hostile("GET", f"{API}/requests?limit=%EF%BC%95", 400, ("limit",), None),
    "api-which-stage-zero-width": Hostile("GET", f"{API}/which?model={{model}}&stage=Production%E2%80%8B", 400, ("stage",)),
    "api-which-nul-model": Hostile("GET", f"{API}/which?model=a%00b&alias=champion", 400, ("model", "NUL")),
    "api-which-nul-alias": Hostile("GET", f"{API}/which?model={{model}}&alias=champ%00ion", 400, ("alias", "NUL")),
    # -- NUL bytes --
    "api-create-nul-in-reviewer": Hostile(
        "POST", f"{API}/requests", 400, ("nul",), j({"change": SET_CHAMPION, "reviewers": ["da\x00ve"]})
    ),
    "api-create-nul-in-alias": Hostile(
        "POST",
        f"{API}/requests",
        400,
        ("nul",),
        j({"change": {"kind": "delete_alias", "name": "{model}", "alias": "champ\x00ion"}}),
    ),
    "api-list-limit-nul": Hostile("GET", f"{API}/requests?limit=50%00", 400, ("limit",)),
    "api-list-cursor-nul": Hostile("GET", f"{API}/requests?cursor={b64(b'id:1' + bytes(1))}", 400, ("cursor",)),
    # -- invalid UTF-8 and other broken bodies --
    "api-create-invalid-utf8": Hostile("POST", f"{API}/requests", 400, ("json object",), b'{"title": "\xff\xfe"}'),
    "api-comment-overlong-utf8": Hostile(
        "POST", f"{API}/requests/{{open}}/comments", 400, ("json object",), b'{"body": "\xc0\xaf"}'
    ),
    "api-list-state-invalid-utf8": Hostile("GET", f"{API}/requests?state=%FF%FE", 400, ("state",)),
    "api-comment-nan": Hostile("POST", f"{API}/requests/{{open}}/comments", 400, ("body must be a string",), b'{"body": NaN}'),
    "api-review-infinity": Hostile("POST", f"{API}/requests/{{open}}/reviews", 400, ("verdict",), b'{"verdict": -Infinity}'),
    "api-create-5000-digit-number": Hostile("POST", f"{API}/requests", 400, ("json object",), b'{"title": ' + b"9" * 5000 + b"}"),
    "api-create-json-null": Hostile("POST", f"{API}/requests", 400, ("json object",), b"null"),
    # -- wrong types and oversized fields --
    "api-create-reviewer-number": Hostile(
        "POST", f"{API}/requests", 400, ("reviewers",), j({"change": SET_CHAMPION, "reviewers": [7]})
    ),
    "api-create-reviewer-300-chars": Hostile(
        "POST", f"{API}/requests", 400, ("reviewers", "256"), j({"change": SET_CHAMPION, "reviewers": ["r" * 300]})
    ),
    "api-create-description-65537": Hostile(
        "POST", f"{API}/requests", 400, ("description", "65536"), j({"change": SET_CHAMPION, "description": "d" * 65537})
    ),
    "api-review-comment-65537": Hostile(
        "POST", f"{API}/requests/{{open}}/reviews", 400, ("comment", "65536"), j({"verdict": "reject", "comment": "c" * 65537})
    ),
    "api-create-name-list": Hostile("POST", f"{API}/requests", 422, ("name",), j({"change": {**SET_CHAMPION, "name": ["a"]}})),
    "api-create-copy-into-513-char-model": Hostile(
        "POST",
        f"{API}/requests",
        400,
        ("model name", "512"),
        j({"change": {"kind": "create_version", "name": "prod." + "m" * 509, "source": "models:/{model}/{v2}"}}),
    ),
    # -- bodies above the 1 MiB limit: declared, chunked, and a Content-Length that lies --
    "api-comment-over-1mib": Hostile(
        "POST", f"{API}/requests/{{open}}/comments", 413, ("too large",), b'{"body": "' + b"x" * ONE_MIB + b'"}'
    ),
    "api-comment-over-1mib-chunked": Hostile(
        "POST", f"{API}/requests/{{open}}/comments", 413, ("too large",), b'{"body": "' + b"x" * ONE_MIB + b'"}', chunked=True
    ),
    "api-create-content-length-lies": Hostile(
        "POST", f"{API}/requests", 413, ("too large",), b"{}", headers=(("Content-Length", str(50 * ONE_MIB)),)
    ),
    # -- content types --
    "api-create-form-urlencoded": Hostile("POST", f"{API}/requests", 400, ("application/json",), b"change=x", FORM),
    "api-create-multipart": Hostile(
        "POST",
        f"{API}/requests",
        400,
        ("application/json",),
        b'--b\r\nContent-Disposition: form-data; name="change"\r\n\r\nx\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ),
    "api-create-json-typo-content-type": Hostile(
        "POST", f"{API}/requests", 400, ("application/json",), j({"change": SET_CHAMPION}), "application/jsonx"
    ),
    # -- ids at the integer boundaries, and ids that are not integers --
    "api-get-id-2-31": Hostile("GET", f"{API}/requests/{2**31}", 404, ("2147483648",)),
    "api-get-id-2-31-minus-1": Hostile("GET", f"{API}/requests/{2**31 - 1}", 404, ("2147483647",)),
    "api-withdraw-id-2-63": Hostile("POST", f"{API}/requests/{2**63}/withdraw", 404, ("9223372036854775808",), user="alice"),
    "api-comment-id-2-64": Hostile("POST", f"{API}/requests/{2**64}/comments", 404, ("18446744073709551616",), j({"body": "hi"})),
    "api-review-id-exponent": Hostile("POST", f"{API}/requests/1e3/reviews", 404, ("not found",), j({"verdict": "approve"})),
    "api-edit-id-hex": Hostile("PATCH", f"{API}/requests/0x1", 404, ("not found",), j({"title": "x"})),
    "api-retry-id-plus-sign": Hostile("POST", f"{API}/requests/+1/retry", 404, ("not found",)),
    "api-get-id-invalid-utf8": Hostile("GET", f"{API}/requests/%FF", 404, ("not found",)),
    "api-review-trailing-slash": Hostile(
        "POST", f"{API}/requests/{{open}}/reviews/", 404, ("not found",), j({"verdict": "approve"})
    ),
    # -- forged cursors --
    "api-cursor-negative-id": Hostile("GET", f"{API}/requests?cursor={b64(b'id:-5')}", 400, ("cursor",)),
    "api-cursor-superscript-digit": Hostile("GET", f"{API}/requests?cursor={b64('id:²'.encode())}", 400, ("cursor",)),
    "api-cursor-empty-id": Hostile("GET", f"{API}/requests?cursor={b64(b'id:')}", 400, ("cursor",)),
    "api-cursor-only-padding": Hostile("GET", f"{API}/requests?cursor=====", 400, ("cursor",)),
    "api-cursor-30-kib": Hostile("GET", f"{API}/requests?cursor={'A' * 30_000}", 400, ("cursor",)),
    "api-cursor-invalid-utf8": Hostile("GET", f"{API}/requests?cursor={b64(bytes([0xFF, 0xFE]) + b'id:1')}", 400, ("cursor",)),
    # -- the forms (a browser session with its CSRF token) --
    "form-new-garbage-token": Hostile(
        "POST", "/checkpoint/requests/new", 400, ("not readable",), new_form("!!!not-base64!!!"), FORM, form=True
    ),
    "form-new-deep-token": Hostile(
        "POST", "/checkpoint/requests/new", 400, ("not readable",), new_form(b64(deep(60_000))), FORM, form=True
    ),
    "form-new-surrogate-token": Hostile(
        "POST",
        "/checkpoint/requests/new",
        400,
        ("not readable", "surrogate"),
        token_form({**SET_CHAMPION, "alias": "prod\ud800"}),
        FORM,
        form=True,
    ),
    "form-new-token-unknown-field": Hostile(
        "POST", "/checkpoint/requests/new", 400, ("not readable",), token_form({**SET_CHAMPION, "colour": "red"}), FORM, form=True
    ),
    "form-new-title-301": Hostile(
        "POST", "/checkpoint/requests/new", 400, ("at most 300",), token_form(SET_CHAMPION, title="t" * 301), FORM, form=True
    ),
    "form-new-title-blank": Hostile(
        "POST", "/checkpoint/requests/new", 400, ("title",), token_form(SET_CHAMPION, title=" \t "), FORM, form=True
    ),
    "form-new-nul-description": Hostile(
        "POST", "/checkpoint/requests/new", 400, ("nul",), token_form(SET_CHAMPION, description="a\x00b"), FORM, form=True
    ),
    "form-new-nul-reviewer": Hostile(
        "POST", "/checkpoint/requests/new", 400, ("nul",), token_form(SET_CHAMPION, reviewers="da\x00ve"), FORM, form=True
    ),
    "form-new-self-reviewer": Hostile(
        "POST", "/checkpoint/requests/new", 400, ("yourself",), token_form(SET_CHAMPION, reviewers="carol"), FORM, form=True
    ),
    "form-new-without-csrf-token": Hostile(
        "POST", "/checkpoint/requests/new", 400, ("csrf",), b"change=x&title=t", FORM, form=True
    ),
    "form-new-over-1mib": Hostile(
        "POST", "/checkpoint/requests/new", 413, ("too large",), b"title=" + b"x" * ONE_MIB + b"&csrf_token=x", FORM, form=True
    ),
    "form-review-id-2-63": Hostile(
        "POST",
        f"/checkpoint/requests/{2**63}/review",
        404,
        ("9223372036854775808",),
        lambda s: f"verdict=approve&csrf_token={s.token}".encode(),
        FORM,
        form=True,
    ),
    "page-list-bad-state": Hostile("GET", "/checkpoint/requests?state=open%00", 400, ("state",), form=True),
    "page-list-forged-cursor": Hostile("GET", f"/checkpoint/requests?cursor={b64(b'id:x')}", 400, ("cursor",), form=True),
    "page-new-deep-token": Hostile(
        "GET", "/checkpoint/requests/new?change=" + b64(b'{"a":' * 5000 + b"1" + b"}" * 5000), 400, ("not readable",), form=True
    ),
    # -- the governed MLflow routes (the MLflow client's own calls) --
    "mlflow-alias-deep-json": Hostile("POST", f"{MLFLOW}/registered-models/alias", 400, (NESTED,), deep(100_000)),
    "mlflow-alias-surrogate": Hostile(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        400,
        ("surrogate",),
        j({"name": "{model}", "alias": "prod\ud800", "version": "{v2}"}),
    ),
    "mlflow-alias-version-exponent": Hostile(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        400,
        ("version", "1e3"),
        j({"name": "{model}", "alias": "champion", "version": "1e3"}),
    ),
    "mlflow-alias-version-2-63": Hostile(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        422,
        ("mlflow",),
        j({"name": "{model}", "alias": "champion", "version": str(2**63)}),
    ),
    "mlflow-alias-version-minus-1": Hostile(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        422,
        ("no version -1",),
        j({"name": "{model}", "alias": "champion", "version": "-1"}),
    ),
    "mlflow-alias-version-0": Hostile(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        422,
        ("no version 0",),
        j({"name": "{model}", "alias": "champion", "version": "0"}),
    ),
    "mlflow-transition-version-abc": Hostile(
        "POST",
        f"{MLFLOW}/model-versions/transition-stage",
        400,
        ("version",),
        j({"name": "{model}", "version": "abc", "stage": "Production"}),
    ),
    "mlflow-transition-stage-zero-width": Hostile(
        "POST",
        f"{MLFLOW}/model-versions/transition-stage",
        400,
        ("stage",),
        j({"name": "{model}", "version": "{v2}", "stage": "Production\u200b"}),
    ),
    "mlflow-alias-over-1mib": Hostile(
        "POST", f"{MLFLOW}/registered-models/alias", 400, ("too large",), b'{"name": "' + b"m" * ONE_MIB + b'"}'
    ),
    "mlflow-alias-over-1mib-chunked": Hostile(
        "POST", f"{MLFLOW}/registered-models/alias", 400, ("too large",), b'{"name": "' + b"m" * ONE_MIB + b'"}', chunked=True
    ),
    "mlflow-alias-content-length-lies": Hostile(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        400,
        ("too large",),
        b"{}",
        headers=(("Content-Length", str(10 * 1024 * ONE_MIB)),),
    ),
    "mlflow-alias-invalid-utf8": Hostile(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        400,
        ("malformed json",),
        raw(b'{"name": "{model}", "alias": "champion\xff", "version": "{v2}"}'),
    ),
    "mlflow-alias-5000-digit-version": Hostile(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        400,
        ("malformed json",),
        raw(b'{"name": "{model}", "alias": "champion", "version": ' + b"9" * 5000 + b"}"),
    ),
    "mlflow-alias-nul-in-name": Hostile(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        400,
        ("nul",),
        j({"name": "{model}\x00", "alias": "champion", "version": "{v2}"}),
    ),
    "mlflow-alias-json-null": Hostile("POST", f"{MLFLOW}/registered-models/alias", 400, ("json object",), b"null"),
    "mlflow-alias-duplicate-name-key": Hostile(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        400,
        ("duplicated", "name"),
        raw(b'{"name": "other", "name": "{model}", "alias": "champion", "version": "{v2}"}'),
    ),
    "mlflow-delete-model-rtl-name": Hostile(
        "DELETE", f"{MLFLOW}/registered-models/delete", 404, ("not found",), j({"name": "{model}\u202e"})
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_input_is_a_clear_4xx_and_changes_nothing(site, case):
    target = case.target.format_map(_Seed(site.fill))
    body = case.body(site) if callable(case.body) else case.body
    headers: list[tuple[str, str]] = [*case.headers]
    if case.content_type and body is not None:
        headers.append(("Content-Type", case.content_type))
    if case.form:
        headers += [("Cookie", site.cookie), ("Accept", "text/html")]
    elif case.user:
        headers.append(("Authorization", basic(case.user)))
    if case.chunked:
        headers.append(("Transfer-Encoding", "chunked"))
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[i : i + 65536] for i in range(0, len(body), 65536)))
        body += b"0\r\n\r\n"
    watched = [site.fill["model"], f"prod.{site.fill['model']}"]
    before, registry_before = database_dump(site.engine), registry_state(site.mlflow_url, watched)

    answer = send(site.url, case.method, target, headers, body, chunked=case.chunked)

    after, registry_after = database_dump(site.engine), registry_state(site.mlflow_url, watched)
    shown = f"{answer.status} {answer.body[:400]!r}"
    assert answer.status == case.status, shown
    message = _message(answer)
    for needle in case.mentions:
        assert needle.lower() in message.lower(), f"the message does not name {needle!r}: {message[:400]!r}"
    if answer.status != 413 and not case.form:
        assert len(message) < 2000, "an error message must not echo a hostile body back"
    assert after == before, "a refused call changed the database"
    assert registry_after == registry_before, "a refused call changed MLflow's registry"


def send(base: str, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None, *, chunked: bool):
    if not chunked:
        return raw_request(base, method, target, headers, body, timeout=60)
    # raw_request adds Content-Length for a body; a chunked one must go without it.
    import http.client
    from urllib.parse import urlsplit

    from tests.support.proxy import RawAnswer

    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for key, value in headers:
            conn.putheader(key, value)
        conn.endheaders()
        try:
            conn.send(body or b"")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before reading it all; its answer is what counts
        response = conn.getresponse()
        return RawAnswer(response.status, list(response.getheaders()), response.read())
    finally:
        conn.close()


def _message(answer) -> str:
    """The error's message: MLflow's JSON shape for programs, the page's text for people."""
    content_type = dict((k.lower(), v) for k, v in answer.headers).get("content-type", "")
    text = answer.body.decode("utf-8", "replace")
    if content_type.startswith("application/json"):
        payload = json.loads(text)
        assert {"error_code", "message"} <= set(payload), payload
        assert isinstance(payload["error_code"], str) and payload["error_code"].isupper(), payload
        return payload["message"]
    assert content_type.startswith("text/html"), f"an error neither JSON nor a page: {content_type!r} {text[:200]!r}"
    import html

    return html.unescape(text)


def test_the_hostile_table_is_big_enough():
    assert len(HOSTILE) >= 40
    kinds = {name.split("-", 1)[0] for name in HOSTILE}
    assert kinds == {"api", "form", "page", "mlflow"}


# -- path confusion against the governed-route rules ---------------------------------------------

ALIAS = "registered-models/alias"


@dataclass(frozen=True)
class Spelling:
    """A path spelling of a governed call not already in tests/integration/test_governed_variants.py."""

    target: str
    method: str = "POST"
    body: bool = True  # the set-alias-to-champion body
    headers: dict = field(default_factory=lambda: {"Content-Type": "application/json"})


SPELLINGS = {
    "dot-dot-segment": Spelling(f"{MLFLOW}/model-versions/../{ALIAS}"),
    "dot-dot-encoded": Spelling(f"{MLFLOW}/model-versions/%2e%2e/{ALIAS}"),
    "dot-dot-encoded-upper": Spelling(f"{MLFLOW}/model-versions/%2E%2E/{ALIAS}"),
    "dot-encoded": Spelling(f"{MLFLOW}/registered-models/%2e/alias"),
    "dot-dot-before-prefix": Spelling(f"/x/..{MLFLOW}/{ALIAS}"),
    "dot-dot-encoded-slashes": Spelling(f"{MLFLOW}/model-versions%2F..%2F{ALIAS}"),
    "ajax-api-upper-case": Spelling(f"/AJAX-API/2.0/mlflow/{ALIAS}"),
    "ajax-api-trailing-slash": Spelling(f"/ajax-api/2.0/mlflow/{ALIAS}/"),
    "ajax-api-static-prefix": Spelling(f"/team/ajax-api/2.0/mlflow/{ALIAS}"),
    "static-prefix-double-slashes": Spelling(f"//team//api/2.0/mlflow//{ALIAS}"),
    "static-prefix-encoded-slash": Spelling(f"/team%2Fapi/2.0/mlflow/{ALIAS}"),
    "absolute-form-ajax": Spelling(f"http://127.0.0.1:9/ajax-api/2.0/mlflow/{ALIAS}"),
    "api-version-2-00": Spelling(f"/api/2.00/mlflow/{ALIAS}"),
    "api-version-1-0": Spelling(f"/api/1.0/mlflow/{ALIAS}"),
    "backslash": Spelling(f"{MLFLOW}/registered-models\\alias"),
    "encoded-backslash": Spelling(f"{MLFLOW}/registered-models%5Calias"),
    "overlong-utf8-slash": Spelling(f"{MLFLOW}/registered-models%C0%AFalias"),
    "encoded-nul-suffix": Spelling(f"{MLFLOW}/{ALIAS}%00"),
    "encoded-space-suffix": Spelling(f"{MLFLOW}/{ALIAS}%20"),
    "encoded-question-mark": Spelling(f"{MLFLOW}/{ALIAS}%3Fname=x"),
    "encoded-hash": Spelling(f"{MLFLOW}/{ALIAS}%23x"),
    "duplicate-query-keys": Spelling(f"{MLFLOW}/{ALIAS}?alias=candidate&alias=champion&name=x&name=y"),
    "put-method": Spelling(f"{MLFLOW}/{ALIAS}", method="PUT"),
    "get-transition-with-query": Spelling(
        f"{MLFLOW}/model-versions/transition-stage?name={{model}}&version={{v2}}&stage=Production", method="GET", body=False
    ),
    "method-override-header": Spelling(
        f"{MLFLOW}/{ALIAS}", headers={"Content-Type": "application/json", "X-HTTP-Method-Override": "GET"}
    ),
}


@pytest.mark.parametrize("spelling", list(SPELLINGS.values()), ids=list(SPELLINGS))
def test_path_confusion_is_governed_or_refused(site, spelling):
    """Each spelling is governed (403 and a request, or the UI's pointer) or refused (4xx, no
    request); MLflow's registry never changes."""
    model = site.fill["model"]
    target = spelling.target.format_map(_Seed(site.fill))
    body = json.dumps({"name": model, "alias": "champion", "version": site.fill["v2"]}).encode() if spelling.body else None
    headers = [("Authorization", basic("erin")), *spelling.headers.items()]
    watched = [model, f"prod.{model}"]
    before = registry_state(site.mlflow_url, watched)
    requests_before = database_dump(site.engine)["rows"]["promote_requests"]

    answer = raw_request(site.url, spelling.method, target, headers, body, timeout=60)

    shown = f"{answer.status} {answer.body[:300]!r}"
    assert registry_state(site.mlflow_url, watched) == before, f"{target} changed MLflow's registry: {shown}"
    requests_after = database_dump(site.engine)["rows"]["promote_requests"]
    opened = dict(answer.values("X-Checkpoint-Request") and [("id", answer.values("X-Checkpoint-Request")[0])])
    if answer.status == 403 and (opened or answer.values("X-Checkpoint-New-Request")):
        payload = json.loads(answer.body)
        assert payload["error_code"] == "PERMISSION_DENIED" and "needs review" in payload["message"], shown
        if opened:
            assert len(requests_after) >= len(requests_before)
            assert any(str(row[0]) == opened["id"] for row in requests_after), shown
        return
    assert 400 <= answer.status < 500, f"{target} was neither governed nor refused: {shown}"
    assert requests_after == requests_before, "a refused spelling opened a request"
