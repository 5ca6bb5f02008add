"""What a caller may see (issue #12, class 8) and hardening (class 10), tried as an attacker would.

Class 8 runs against a real MLflow with its basic-auth app: on one model alice has EDIT, bob
MANAGE, carol READ and dave DENY. dave tries every way Checkpoint could tell him about the model
or let him ask for its promotion; an unauthenticated caller tries the governed routes. Each is
refused or filtered, MLflow is read back unchanged, and carol (READ) sees what she may.

Class 10: a repeated identity header in ``header`` mode and a raw non-ASCII byte in the request
target, on both the gunicorn path (`checkpoint serve`) and werkzeug's in-process one; the panel's
redirect in a real Chromium.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from playwright.sync_api import expect

from checkpoint import create_app
from checkpoint.registry import READ_RIGHT_SECONDS
from checkpoint.services import services
from tests.support.apps import LiveCheckpoint, live
from tests.support.auth import ADMIN, PASSWORDS, as_user, dump, grant, mlflow_mode
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import make_model
from tests.support.proxy import checkpoint_in_thread, checkpoint_process


def serve_mlflow_mode(auth_mlflow, database_url: str, tmp_path) -> Iterator[LiveCheckpoint]:
    """Checkpoint in ``mlflow`` identity mode, reading and applying with the admin account, with a
    webhook (to a closed port: its deliveries stay in the outbox, to be listed)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({"webhooks": [{"name": "ops", "url": "http://127.0.0.1:9/hook", "events": ["*"]}]}))
    app = create_app(mlflow_mode(auth_mlflow, database_url, tmp_path, policy_file=policy))
    with live(app, database_url) as served:
        yield served


@pytest.fixture
def visible(auth_mlflow, sqlite_url, tmp_path) -> Iterator[LiveCheckpoint]:
    yield from serve_mlflow_mode(auth_mlflow, sqlite_url, tmp_path)


@pytest.fixture
def visible_both(auth_mlflow, database_url, tmp_path) -> Iterator[LiveCheckpoint]:
    """The same on SQLite and PostgreSQL: the lists' filtering is SQL."""
    yield from serve_mlflow_mode(auth_mlflow, database_url, tmp_path)


def secret_model(auth_mlflow, monkeypatch) -> tuple[str, list[str]]:
    """A model whose v1 holds Production and @champion (set on MLflow by the admin); dave has DENY."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    name, versions = make_model(auth_mlflow.url, versions=3)
    direct = MlflowClient(tracking_uri=auth_mlflow.url, registry_uri=auth_mlflow.url)
    direct.transition_model_version_stage(name, versions[0], "Production")
    direct.set_registered_model_alias(name, "champion", versions[0])
    for user, permission in (("alice", "EDIT"), ("bob", "MANAGE"), ("carol", "READ"), ("dave", "DENY")):
        grant(auth_mlflow.url, user, name, permission)
    return name, versions


def registry_state(auth_mlflow, name: str) -> dict:
    """What MLflow holds for ``name``, read directly as the admin."""
    answer = requests.get(
        f"{auth_mlflow.url}/api/2.0/mlflow/model-versions/search", auth=ADMIN, timeout=30, params={"filter": f"name = '{name}'"}
    )
    assert answer.status_code == 200, answer.text
    versions = sorted(answer.json()["model_versions"], key=lambda v: int(v["version"]))
    return {v["version"]: (v["current_stage"], tuple(sorted(v.get("aliases", ())))) for v in versions}


def open_as(base: str, user: str, name: str, version: str) -> int:
    """``user`` moves @champion through Checkpoint's JSON API; returns the request id."""
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": version}
    answer = requests.post(
        f"{base}/checkpoint/api/v1/requests",
        auth=as_user(user),
        timeout=30,
        json={"change": change, "title": "Promote the challenger"},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def change_token(change: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(change).encode()).decode().rstrip("=")


def test_deny_user_opens_nothing_through_any_door(visible, auth_mlflow, monkeypatch):
    """Gateway (client and UI routes), JSON API, form: dave gets MLflow's refusal, no request."""
    base = visible.url
    name, (v1, v2, _v3) = secret_model(auth_mlflow, monkeypatch)
    other, _ = make_model(auth_mlflow.url, versions=1)  # default READ: dave may read this one
    before_db, before_mlflow = dump(visible.database_url), registry_state(auth_mlflow, name)

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "dave")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["dave"])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # The MLflow client reads the model first (is it a prompt?): MLflow itself refuses him there.
    with pytest.raises(MlflowException, match="403") as refused:
        MlflowClient(tracking_uri=base).set_registered_model_alias(name, "champion", v2)
    assert "promote request" not in str(refused.value)
    # Straight to the governed routes, as a script or MLflow's UI would send them.
    governed = [
        ("POST", "model-versions/transition-stage", {"name": name, "version": v2, "stage": "Production"}),
        ("POST", "registered-models/alias", {"name": name, "alias": "champion", "version": v2}),
        ("DELETE", "registered-models/alias", {"name": name, "alias": "champion"}),
    ]
    for prefix in ("/api", "/ajax-api"):
        for method, route, body in governed:
            answer = requests.request(method, f"{base}{prefix}/2.0/mlflow/{route}", auth=as_user("dave"), json=body, timeout=30)
            assert answer.status_code == 403, (route, answer.text)
            assert answer.json() == {"error_code": "PERMISSION_DENIED", "message": "Permission denied"}
            assert "X-Checkpoint-New-Request" not in answer.headers

    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
    api = requests.post(
        f"{base}/checkpoint/api/v1/requests", auth=as_user("dave"), timeout=30, json={"change": change, "title": "mine now"}
    )
    assert api.status_code == 403, api.text
    assert api.json()["error_code"] == "PERMISSION_DENIED"
    # A copy into a model he may read, from the one he may not: the source counts too.
    copy = {"kind": "create_version", "name": other, "source": f"models:/{name}/{v1}"}
    copied = requests.post(
        f"{base}/checkpoint/api/v1/requests", auth=as_user("dave"), timeout=30, json={"change": copy, "title": "copy it"}
    )
    assert copied.status_code == 403, copied.text
    proxied = requests.post(
        f"{base}/api/2.0/mlflow/model-versions/create",
        auth=as_user("dave"),
        timeout=30,
        json={"name": other, "source": f"models:/{name}/{v1}"},
    )
    assert proxied.status_code == 403 and proxied.json()["message"] == "Permission denied", proxied.text

    dave = requests.Session()
    dave.auth = as_user("dave")
    form = dave.get(f"{base}/checkpoint/requests/new", params={"change": change_token(change)}, timeout=30)
    assert form.status_code == 403
    assert f"v{v1}" not in form.text
    # The CSRF token from a form he may see, replayed with a change on the model he may not read.
    open_form = dave.get(
        f"{base}/checkpoint/requests/new", timeout=30, params={"change": change_token({**change, "name": other, "version": "1"})}
    )
    assert open_form.status_code == 200, open_form.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', open_form.text).group(1)
    posted = dave.post(
        f"{base}/checkpoint/requests/new",
        timeout=30,
        allow_redirects=False,
        data={"csrf_token": token, "change": change_token(change), "title": "mine now"},
    )
    assert posted.status_code == 403, posted.text[:300]

    assert dump(visible.database_url) == before_db
    assert registry_state(auth_mlflow, name) == before_mlflow

    # Next to it, carol (READ) asks through the same doors and gets her request.
    carol_id = open_as(base, "carol", name, v2)
    assert requests.get(f"{base}/checkpoint/api/v1/requests/{carol_id}", auth=as_user("carol"), timeout=30).ok
    assert registry_state(auth_mlflow, name) == before_mlflow  # asked, not applied


def test_deny_user_reads_nothing_about_the_model(visible_both, auth_mlflow, monkeypatch):
    """Detail, diff, checks, events, actions, lists, counts, which, history, deliveries, audit export."""
    visible = visible_both
    base = visible.url
    name, (v1, v2, _v3) = secret_model(auth_mlflow, monkeypatch)
    mine, _ = make_model(auth_mlflow.url, versions=2)  # default READ for everyone: dave may read it
    open_id = open_as(base, "alice", mine, "2")
    secret_id = open_as(base, "alice", name, v2)  # the newest: the first row of every list
    before_db, before_mlflow = dump(visible.database_url), registry_state(auth_mlflow, name)

    def dave(method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{base}{path}", auth=as_user("dave"), timeout=30, allow_redirects=False, **kwargs)

    missing = dave("GET", "/checkpoint/api/v1/requests/999999")
    for path in (f"/checkpoint/api/v1/requests/{secret_id}", f"/checkpoint/requests/{secret_id}"):
        answer = dave("GET", path)
        assert answer.status_code == 404, (path, answer.text[:300])
        assert name not in answer.text and f"v{v1}" not in answer.text
    assert dave("GET", f"/checkpoint/api/v1/requests/{secret_id}").json()["message"] == missing.json()["message"].replace(
        "999999", str(secret_id)
    )
    for path, body in (
        (f"/checkpoint/api/v1/requests/{secret_id}/comments", {"body": "hi"}),
        (f"/checkpoint/api/v1/requests/{secret_id}/checks", {}),
        (f"/checkpoint/api/v1/requests/{secret_id}/reviews", {"verdict": "approve"}),
        (f"/checkpoint/api/v1/requests/{secret_id}/withdraw", {}),
    ):
        answer = dave("POST", path, json=body)
        assert answer.status_code == 404, (path, answer.text)

    listed = dave("GET", "/checkpoint/api/v1/requests", params={"state": "open", "limit": "1"}).json()
    assert [r["id"] for r in listed["requests"]] == [open_id]  # a full page of what he may read
    assert listed["next_cursor"] is None  # and no hint that a row was left out
    everything = dave("GET", "/checkpoint/api/v1/requests", params={"limit": "200"}).json()["requests"]
    assert secret_id not in [r["id"] for r in everything] and open_id in [r["id"] for r in everything]
    by_name = dave("GET", "/checkpoint/api/v1/requests", params={"model": name}).json()
    assert by_name == {"requests": [], "next_cursor": None}
    page = dave("GET", "/checkpoint/requests", params={"state": "all"})
    assert page.status_code == 200 and name not in page.text and mine in page.text

    carol_summary = requests.get(
        f"{base}/checkpoint/api/v1/summary", params={"model": name}, auth=as_user("carol"), timeout=30
    ).json()
    dave_summary = dave("GET", "/checkpoint/api/v1/summary", params={"model": name}).json()
    assert carol_summary["open_for_model"] == 1 and carol_summary["requests"][0]["id"] == secret_id
    assert dave_summary["open_for_model"] == 0 and dave_summary["requests"] == []
    assert dave_summary["open"] == carol_summary["open"] - 1  # his count is of what he may read

    for params in ({"model": name, "alias": "champion"}, {"model": name, "stage": "production"}):
        which = dave("GET", "/checkpoint/api/v1/which", params=params)
        assert which.status_code == 403 and which.json()["error_code"] == "PERMISSION_DENIED"
        assert f'"{v1}"' not in which.text
    history = dave("GET", f"/checkpoint/models/{name}/history")
    assert history.status_code == 403 and f"v{v1}" not in history.text
    export = dave("GET", "/checkpoint/api/v1/audit/export")
    assert export.status_code == 403 and name not in export.text
    delivered = dave("GET", "/checkpoint/api/v1/deliveries", params={"limit": "1"}).json()
    assert [d["request_id"] for d in delivered["deliveries"]] == [open_id]  # a full page, his only
    assert secret_id not in [d["request_id"] for d in dave("GET", "/checkpoint/api/v1/deliveries").json()["deliveries"]]
    page = dave("GET", "/checkpoint/deliveries")
    assert page.status_code == 200 and f">#{secret_id}</a>" not in page.text and f">#{open_id}</a>" in page.text
    verify = dave("GET", "/checkpoint/api/v1/audit/verify")
    assert verify.status_code == 200 and name not in verify.text  # counts and a hash only

    assert dump(visible.database_url) == before_db
    assert registry_state(auth_mlflow, name) == before_mlflow

    # carol (READ) sees all of it: the request with its diff, which, history; the admin exports.
    def carol(path: str, **params) -> requests.Response:
        return requests.get(f"{base}{path}", params=params, auth=as_user("carol"), timeout=30)

    detail = carol(f"/checkpoint/requests/{secret_id}")
    assert detail.status_code == 200 and name in detail.text
    assert carol(f"/checkpoint/api/v1/requests/{secret_id}").json()["champion"]["version"] == v1
    assert carol("/checkpoint/api/v1/which", model=name, alias="champion").json()["version"] == v1
    assert carol("/checkpoint/api/v1/which", model=name, stage="Production").json()["version"] == v1
    assert carol(f"/checkpoint/models/{name}/history").status_code == 200
    assert secret_id in [d["request_id"] for d in carol("/checkpoint/api/v1/deliveries").json()["deliveries"]]
    assert carol("/checkpoint/api/v1/audit/export").status_code == 403  # the full export is the admins'
    full = requests.get(f"{base}/checkpoint/api/v1/audit/export", auth=ADMIN, timeout=30)
    assert full.status_code == 200 and name in full.text


def test_unauthenticated_governed_call_learns_nothing(visible, auth_mlflow, monkeypatch):
    """No credentials, or wrong ones: 401 before any registry read, and nothing about what holds what."""
    base = visible.url
    name, (v1, v2, _v3) = secret_model(auth_mlflow, monkeypatch)
    before_db, before_mlflow = dump(visible.database_url), registry_state(auth_mlflow, name)
    calls = [
        ("model-versions/transition-stage", {"name": name, "version": v2, "stage": "Production"}),
        ("registered-models/alias", {"name": name, "alias": "champion", "version": v2}),
        ("model-versions/delete", {"name": name, "version": v1}),
    ]
    for prefix in ("/api", "/ajax-api"):
        for route, body in calls:
            method = "DELETE" if route.endswith("delete") else "POST"
            for auth in (None, ("dave", "not-his-password")):
                answer = requests.request(method, f"{base}{prefix}/2.0/mlflow/{route}", json=body, auth=auth, timeout=30)
                assert answer.status_code == 401, (prefix, route, answer.text)
                assert answer.json()["error_code"] == "UNAUTHENTICATED"
                assert answer.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
                assert "Production" not in answer.text and "champion" not in answer.text
                assert not re.search(r"\d", answer.text), answer.text  # no version number of any kind
                assert "X-Checkpoint-New-Request" not in answer.headers
    # dave, signed in, on the UI's route: refused like MLflow refuses him, with nothing about the holder.
    answer = requests.post(
        f"{base}/ajax-api/2.0/mlflow/model-versions/transition-stage",
        auth=as_user("dave"),
        json={"name": name, "version": v2, "stage": "Production"},
        timeout=30,
    )
    assert answer.status_code == 403 and not re.search(r"\d", answer.text)
    assert dump(visible.database_url) == before_db
    assert registry_state(auth_mlflow, name) == before_mlflow
    # The same call with carol's credentials is governed and points her at the form.
    ui = requests.post(
        f"{base}/ajax-api/2.0/mlflow/model-versions/transition-stage",
        auth=as_user("carol"),
        json={"name": name, "version": v2, "stage": "Production"},
        timeout=30,
    )
    assert ui.status_code == 403 and "/checkpoint/requests/new?change=" in ui.headers["X-Checkpoint-New-Request"]


def test_revoked_read_right_is_honoured_within_the_cache_time(visible, auth_mlflow, monkeypatch):
    """The per-caller answer is cached briefly, by caller: bob's right says nothing about dave's."""
    base = visible.url
    name, (_v1, v2, _v3) = secret_model(auth_mlflow, monkeypatch)
    request_id = open_as(base, "alice", name, v2)
    registry = services(visible.app).registry
    assert requests.get(f"{base}/checkpoint/api/v1/requests/{request_id}", auth=as_user("bob"), timeout=30).ok
    assert requests.get(f"{base}/checkpoint/api/v1/requests/{request_id}", auth=as_user("dave"), timeout=30).status_code == 404
    revoked = requests.post(
        f"{auth_mlflow.url}/api/3.0/mlflow/users/permissions/revoke",
        auth=ADMIN,
        timeout=30,
        json={"username": "bob", "resource_type": "registered_model", "resource_id": name},
    )
    assert revoked.status_code == 200, revoked.text
    grant(auth_mlflow.url, "bob", name, "DENY")
    # Within the cache's time the old answer stands; once it passes, MLflow's new one counts.
    assert requests.get(f"{base}/checkpoint/api/v1/requests/{request_id}", auth=as_user("bob"), timeout=30).ok
    cache = registry._read_rights
    monkeypatch.setattr(cache, "clock", lambda: time.monotonic() + READ_RIGHT_SECONDS + 1)
    assert requests.get(f"{base}/checkpoint/api/v1/requests/{request_id}", auth=as_user("bob"), timeout=30).status_code == 404


# -- class 10: hardening ------------------------------------------------------------------


def raw_exchange(url: str, request_line: bytes, headers: list[tuple[bytes, bytes]] = ()) -> tuple[int, bytes]:
    """Send bytes exactly as given (no client library would send a raw non-ASCII target)."""
    parts = urlsplit(url)
    head = [request_line, b"Host: " + parts.netloc.encode(), *(k + b": " + v for k, v in headers), b"Connection: close"]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")
        data = b""
        for _ in range(10_000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


@pytest.fixture(params=["gunicorn", "werkzeug"])
def header_mode(request, mlflow_server, tmp_path):
    """Checkpoint in ``header`` mode trusting loopback, admins by group ``admins``, served both ways."""
    env = {"CHECKPOINT_AUTH": "header", "CHECKPOINT_TRUSTED_PROXIES": "127.0.0.1/32", "CHECKPOINT_ADMIN_GROUPS": "admins"}
    if request.param == "gunicorn":
        with checkpoint_process(mlflow_server.url, tmp_path / "served", **env) as served:
            yield served.url
    else:
        with checkpoint_in_thread(
            mlflow_server.url, tmp_path / "thread", auth="header", trusted_proxies="127.0.0.1/32", admin_groups="admins"
        ) as url:
            yield url


def test_repeated_identity_header_is_refused_never_joined(header_mode):
    """Two X-Forwarded-Groups (the second naming the admin group) made a user admin when joined."""
    export = b"GET /checkpoint/api/v1/audit/export HTTP/1.1"
    user = [(b"X-Forwarded-User", b"mallory")]
    status, body = raw_exchange(
        header_mode, export, [*user, (b"X-Forwarded-Groups", b"devs"), (b"X-Forwarded-Groups", b"admins")]
    )
    assert status == 400, body
    assert "X-Forwarded-Groups" in json.loads(body)["message"]
    status, body = raw_exchange(
        header_mode, b"GET /checkpoint/requests HTTP/1.1", [(b"X-Forwarded-User", b"mallory"), (b"x-forwarded-user", b"admin")]
    )
    assert status == 400 and "X-Forwarded-User" in json.loads(body)["message"]
    status, body = raw_exchange(
        header_mode,
        b"GET /api/2.0/mlflow/registered-models/search HTTP/1.1",
        [*user, (b"X-Forwarded-Groups", b"a"), (b"X-Forwarded-Groups", b"b")],
    )
    assert status == 400, body  # proxied paths too: never read, never guessed

    # One header with a comma list is the legitimate form: it still works, both ways round.
    status, _ = raw_exchange(header_mode, export, [*user, (b"X-Forwarded-Groups", b"devs, ops")])
    assert status == 403  # read as groups devs and ops: not an admin
    status, _ = raw_exchange(header_mode, export, [*user, (b"X-Forwarded-Groups", b"devs,admins")])
    assert status == 200
    # A repeat of a header that is not an identity header is joined as HTTP allows.
    status, _ = raw_exchange(
        header_mode,
        b"GET /checkpoint/api/v1/summary HTTP/1.1",
        [*user, (b"Accept", b"text/plain"), (b"Accept", b"application/json")],
    )
    assert status == 200


@pytest.mark.parametrize("served", ["gunicorn", "werkzeug"])
def test_raw_non_ascii_byte_in_the_target_gets_a_clear_400(served, mlflow_server, tmp_path):
    """Was a 500 page (the proxy could not encode the line, a query reached the database)."""
    targets = (
        b"/checkpoint/requests/\xff",
        b"/checkpoint/requests?q=caf\xc3\xa9",
        b"/checkpoint/api/v1/which?model=\xff",
        b"/api/2.0/mlflow/registered-models/get?name=caf\xc3\xa9",
        b"/ajax-api/2.0/mlflow/runs/\xff",
        b"/\xff",
    )
    if served == "gunicorn":
        context = checkpoint_process(mlflow_server.url, tmp_path / "served")
    else:
        context = checkpoint_in_thread(mlflow_server.url, tmp_path / "thread")
    with context as handle:
        url = handle if isinstance(handle, str) else handle.url
        for target in targets:
            status, body = raw_exchange(url, b"GET " + target + b" HTTP/1.1")
            assert status == 400, (target, body[:300])
            answer = json.loads(body)
            assert answer["error_code"] == "BAD_REQUEST" and "non-ASCII" in answer["message"], answer
        # The same name percent-encoded is an ordinary call.
        status, body = raw_exchange(url, b"GET /api/2.0/mlflow/registered-models/get?name=caf%C3%A9 HTTP/1.1")
        assert status == 404 and b"RESOURCE_DOES_NOT_EXIST" in body


@pytest.mark.browser
def test_panel_follows_only_same_origin_checkpoint_links(browser_page, screenshot, served_checkpoint):  # noqa: F811
    """A 403 whose header or body names another origin, or a path outside /checkpoint/requests/,
    is handed to MLflow untouched; Checkpoint's own pointer is followed."""
    page = browser_page
    origin = served_checkpoint.url
    evil = f"http://127.0.0.2:{urlsplit(origin).port}"
    form = f"{origin}/checkpoint/requests/new?change=" + change_token(
        {"kind": "set_alias", "name": "fraud", "alias": "champion", "version": "2"}
    )

    # Answers no real server here would give: Playwright plays the hostile upstream for these paths.
    def header(url: str) -> dict:
        return {"headers": {"X-Checkpoint-New-Request": url}}

    def body(url: str) -> dict:
        return {"body": {"checkpoint": {"action": "new_request", "url": url}}}

    answers = {
        "/ajax-api/hostile/header-other-origin": header(f"{evil}/checkpoint/requests/new"),
        "/ajax-api/hostile/header-protocol-relative": header("//127.0.0.2/checkpoint/requests/new"),
        "/ajax-api/hostile/header-other-path": header(f"{origin}/#/models/x?/checkpoint/requests/"),
        "/ajax-api/hostile/header-javascript": header("javascript:alert(1)//checkpoint/requests/"),
        "/ajax-api/hostile/body-other-origin": body(f"{evil}/checkpoint/requests/new"),
        "/ajax-api/hostile/body-dotdot": body(f"{origin}/checkpoint/requests/../../evil"),
        "/ajax-api/hostile/ours": header(form),
    }

    def fulfil(route):
        spec = answers[urlsplit(route.request.url).path]
        route.fulfill(
            status=403,
            content_type="application/json",
            headers=spec.get("headers", {}),
            body=json.dumps(spec.get("body", {"error_code": "PERMISSION_DENIED", "message": "no"})),
        )

    page.route(re.compile(r".*/ajax-api/hostile/.*"), fulfil)
    page.goto(f"{origin}/#/models")
    expect(page.locator('[data-checkpoint="panel"]')).to_be_attached()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    for path in [p for p in answers if not p.endswith("/ours")]:
        for how in ("fetch", "xhr"):
            script = (
                "p => fetch(p, {method: 'POST'}).then(r => r.status)"
                if how == "fetch"
                else "p => new Promise(done => { const x = new XMLHttpRequest(); x.open('POST', p);"
                " x.onload = () => done(x.status); x.send(); })"
            )
            assert page.evaluate(script, path) == 403
            # A round trip later the panel's handlers (the body is read asynchronously) have run.
            assert page.evaluate("() => fetch('/checkpoint/healthz').then(r => r.status)") == 200
            assert page.url.startswith(f"{origin}/#/models"), (path, how, page.url)
    screenshot("stayed-on-mlflow")
    page.evaluate("p => fetch(p, {method: 'POST'})", "/ajax-api/hostile/ours")
    expect(page).to_have_url(form)
    expect(page.get_by_text("champion").first).to_be_visible()
    screenshot("followed-checkpoint-form")
    # Had any hostile pointer been followed, the panel would have been leaving and ignored ours.
    assert [u for u in navigations if "/checkpoint/" in u] == [form]
    assert not [u for u in navigations if "127.0.0.2" in u]


def test_header_mode_governed_call_without_identity_learns_nothing(header_mode, mlflow_server):
    """No SSO identity: 401 before the registry is read, for MLflow's UI route as for the API."""
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name, (v1, v2) = make_model(mlflow_server.url)
    direct.transition_model_version_stage(name, v1, "Production")
    body = {"name": name, "version": v2, "stage": "Production"}
    for prefix in ("/api", "/ajax-api"):
        answer = requests.post(f"{header_mode}{prefix}/2.0/mlflow/model-versions/transition-stage", json=body, timeout=30)
        assert answer.status_code == 401, answer.text
        assert "Production" not in answer.text and not re.search(r"\d", answer.text)
        assert "X-Checkpoint-New-Request" not in answer.headers
    signed_in = requests.post(
        f"{header_mode}/ajax-api/2.0/mlflow/model-versions/transition-stage",
        json=body,
        headers={"X-Forwarded-User": "erin"},
        timeout=30,
    )
    assert signed_in.status_code == 403 and "X-Checkpoint-New-Request" in signed_in.headers
    assert direct.get_model_version(name, v1).current_stage == "Production"
    assert direct.get_model_version(name, v2).current_stage == "None"


def test_an_artifact_refusal_names_the_model_only_to_who_may_read_it(visible, auth_mlflow, monkeypatch):
    """A write into a registered version's files is refused for everyone; the refusal says which
    model, version and stage only to a caller MLflow lets read that model."""
    name, versions = secret_model(auth_mlflow, monkeypatch)
    source = MlflowClient(tracking_uri=auth_mlflow.url).get_model_version(name, versions[0]).source
    target = f"{visible.url}/api/2.0/mlflow-artifacts/artifacts/{source.split(':', 1)[1].strip('/')}/model.pkl"
    answers = {user: requests.put(target, data=b"swapped", auth=as_user(user), timeout=30) for user in ("dave", "carol")}
    assert {user: a.status_code for user, a in answers.items()} == {"dave": 403, "carol": 403}
    assert name in answers["carol"].json()["message"] and "Production" in answers["carol"].json()["message"]
    hidden = answers["dave"].json()["message"]
    assert "immutable" in hidden and name not in hidden and "Production" not in hidden
    assert not re.search(r"version \d", hidden), hidden
