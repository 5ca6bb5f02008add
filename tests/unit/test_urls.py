"""Checkpoint's public address and its links (``checkpoint/urls.py``): the origin a browser's
``Origin`` is compared with, the base every link starts with, and each link's path."""

from __future__ import annotations

import base64
import json

import pytest

from checkpoint import urls

HOST = {"HTTP_HOST": "CP.internal:8080"}


@pytest.mark.parametrize(
    ("env", "configured", "origin"),
    [
        ({}, "https://CP.example:8443/sub", "https://cp.example:8443"),
        (HOST, None, "http://cp.internal:8080"),
        (HOST, "https://cp.example/", "https://cp.example"),  # configured wins over the Host header
        ({"SERVER_NAME": "h", "SERVER_PORT": "5000", "wsgi.url_scheme": "https"}, None, "https://h:5000"),
    ],
)
def test_public_origin(env, configured, origin):
    assert urls.public_origin(env, configured) == origin


@pytest.mark.parametrize(
    ("env", "configured", "base"),
    [
        (HOST, None, "http://cp.internal:8080"),
        (HOST, "https://cp.example", "https://cp.example"),
        (HOST, "https://cp.example/", "https://cp.example"),  # no trailing slash
        (HOST, "https://CP.example/tools/checkpoint/", "https://CP.example/tools/checkpoint"),  # the path is kept as given
        ({"SERVER_NAME": "h", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}, None, "http://h:80"),
    ],
)
def test_public_base(env, configured, base):
    assert urls.public_base(env, configured) == base


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://cp.example", "https://cp.example/checkpoint/requests/42"),
        ("https://cp.example/", "https://cp.example/checkpoint/requests/42"),
        ("https://cp.example/sub", "https://cp.example/sub/checkpoint/requests/42"),
        ("", "/checkpoint/requests/42"),  # no base known: the path alone
        (None, "/checkpoint/requests/42"),
    ],
)
def test_request_page(base, url):
    assert urls.request_page(base, 42) == url


@pytest.mark.parametrize(
    ("link", "url"),
    [
        (lambda b: urls.request_api(b, 7), "http://cp/checkpoint/api/v1/requests/7"),
        (lambda b: urls.new_request_page(b, "eyJr"), "http://cp/checkpoint/requests/new?change=eyJr"),
        (lambda b: urls.model_history(b, "fraud"), "http://cp/checkpoint/models/fraud/history"),
        (
            lambda b: urls.model_history(b, "fraud/eu v2", "team b"),
            "http://cp/checkpoint/models/fraud%2Feu%20v2/history?workspace=team%20b",
        ),
        (lambda b: urls.audit_verify(b, "12:ab"), "http://cp/checkpoint/api/v1/audit/verify?expect=12%3Aab"),
    ],
    ids=["request-api", "new-request", "history", "history-in-workspace", "audit-verify"],
)
def test_each_link_under_the_base(link, url):
    assert link("http://cp/") == url


@pytest.mark.parametrize(
    ("base", "request_id", "model", "workspace", "url"),
    [
        ("https://cp.example/", 3, "fraud", "", "https://cp.example/checkpoint/requests/3"),
        (None, 3, "fraud", "team-b", "/checkpoint/requests/3"),  # a request's page needs no workspace
        (None, None, "fraud/eu v2", "", "/checkpoint/models/fraud%2Feu%20v2/history"),
        ("http://cp", None, "fraud", "team b", "http://cp/checkpoint/models/fraud/history?workspace=team%20b"),
    ],
)
def test_request_url_is_the_request_or_else_the_models_history(base, request_id, model, workspace, url):
    assert urls.request_url(base, request_id, model, workspace) == url


def test_change_token_is_what_the_form_decodes():
    change = {"kind": "set_alias", "name": "fraud/é", "alias": "champion", "version": "3"}
    token = urls.change_token(change)
    assert "=" not in token and "+" not in token and "/" not in token  # safe in a query string as is
    assert json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) == change


@pytest.mark.parametrize(
    ("args", "url"),
    [
        (("fraud", "@champion", "7"), "https://cp/checkpoint/models/fraud/compare?a=%40champion&b=7"),
        (("prod.fraud", "2", "7", "fraud"), "https://cp/checkpoint/models/prod.fraud/compare?a=2&b=7&b_model=fraud"),
        (("a/b", "1", "2", "", "team-b"), "https://cp/checkpoint/models/a%2Fb/compare?a=1&b=2&workspace=team-b"),
    ],
)
def test_compare_page(args, url):
    assert urls.compare_page("https://cp", *args) == url
