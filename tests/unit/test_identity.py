"""Who is calling, without MLflow: the Basic-auth name, the claimed name in ``none`` mode, the
header mode's trusted proxies, groups and admins, and the configuration read from a mapping."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from checkpoint import identity
from checkpoint.identity import ANONYMOUS, HeaderAuth, NoAuth, Unauthenticated, User


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (basic("alice:secret"), "alice"),
        (basic("alice"), "alice"),
        (basic(" alice :x:y"), "alice"),
        (basic("zoë:x"), "zoë"),
        ("basic " + base64.b64encode(b"bob:x").decode(), "bob"),  # the scheme in any case
        (basic(":secret"), None),
        ("Bearer abc", None),
        ("Basic", None),
        ("Basic not-base64!", None),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), None),  # not UTF-8
        ("", None),
    ],
    ids=[
        "name-and-password",
        "name-only",
        "stripped",
        "non-ascii",
        "lower-case-scheme",
        "no-name",
        "bearer",
        "no-value",
        "not-base64",
        "not-utf8",
        "empty",
    ],
)
def test_basic_username(header, name):
    assert identity.basic_username(header) == name


@pytest.mark.parametrize(
    ("environ", "cookie", "name"),
    [
        ({"HTTP_AUTHORIZATION": basic("alice:x")}, "bob", "alice"),  # the client's Basic auth wins
        ({}, "bob", "bob"),
        ({}, None, ANONYMOUS),
        ({"HTTP_AUTHORIZATION": "Bearer t"}, None, ANONYMOUS),
    ],
)
def test_the_claimed_name_in_none_mode(environ, cookie, name):
    assert identity.user_from_environ(environ, cookie) == name


def test_none_mode_marks_admins_and_verifies_nobody():
    auth = NoAuth(frozenset({"root"}))
    assert auth.user({}, "root") == User("root", is_admin=True)
    assert auth.user({"HTTP_AUTHORIZATION": basic("alice:x")}) == User("alice")
    assert auth.user({}).anonymous and not auth.user({}).verified


SSO = HeaderAuth(
    (ipaddress.ip_network("10.0.0.5/32"), ipaddress.ip_network("fd00::/8")),
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Groups",
    frozenset({"root"}),
    frozenset({"platform"}),
)


def sso(addr: str = "10.0.0.5", **headers: str) -> dict:
    return {"REMOTE_ADDR": addr, **{"HTTP_" + k.upper(): v for k, v in headers.items()}}


@pytest.mark.parametrize(
    ("environ", "user"),
    [
        (
            sso(x_forwarded_user="alice", x_forwarded_email="a@x.example", x_forwarded_groups="ml, ,leads"),
            User("alice", "a@x.example", frozenset({"ml", "leads"}), False, True),
        ),
        (sso(x_forwarded_user=" root "), User("root", None, frozenset(), True, True)),
        (sso(x_forwarded_user="pat", x_forwarded_groups="platform"), User("pat", None, frozenset({"platform"}), True, True)),
        (sso("fd00::1", x_forwarded_user="v6"), User("v6", None, frozenset(), False, True)),
    ],
    ids=["groups-and-email", "admin-by-name", "admin-by-group", "ipv6-proxy"],
)
def test_header_mode_reads_the_trusted_proxys_headers(environ, user):
    assert SSO.user(environ) == user


@pytest.mark.parametrize(
    "environ",
    [
        sso("10.0.0.6", x_forwarded_user="alice"),
        sso("not-an-address", x_forwarded_user="alice"),
        sso(),
        sso(x_forwarded_user=" "),
    ],
    ids=["untrusted-peer", "no-peer-address", "no-user-header", "blank-user"],
)
def test_header_mode_refuses_without_a_trusted_identity(environ):
    with pytest.raises(Unauthenticated, match="no identity from a trusted single sign-on proxy"):
        SSO.user(environ)


def test_header_mode_names_repeated_identity_headers_and_drops_them_before_mlflow():
    environ = {identity.REPEATED_KEY: ("HTTP_X_FORWARDED_GROUPS", "HTTP_ACCEPT")}
    assert SSO.repeated(environ) == ["X-Forwarded-Groups"]
    assert SSO.repeated({}) == []
    assert SSO.forwarded_drop == {"HTTP_X_FORWARDED_USER", "HTTP_X_FORWARDED_EMAIL", "HTTP_X_FORWARDED_GROUPS"}


def test_configuration_from_a_mapping():
    auth = identity.from_env(
        "http://127.0.0.1:1",
        {
            "CHECKPOINT_AUTH": " HEADER ",
            "CHECKPOINT_TRUSTED_PROXIES": "10.0.0.0/24, ::1",
            "CHECKPOINT_USER_HEADER": "X-User",
            "CHECKPOINT_ADMINS": "root, ,ops",
            "CHECKPOINT_ADMIN_GROUPS": "platform",
        },
    )
    assert isinstance(auth, HeaderAuth) and auth.mode == "header"
    assert auth.trusted == (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("::1/128"))
    assert auth.user({"REMOTE_ADDR": "10.0.0.9", "HTTP_X_USER": "ops"}).is_admin
    assert auth.admin_groups == {"platform"}
    none = identity.from_env("http://127.0.0.1:1", {"CHECKPOINT_ADMINS": "root"})
    assert none.mode == "none" and none.admins == {"root"}
    assert identity.from_env("http://127.0.0.1:1", {"CHECKPOINT_AUTH": "mlflow"}).mode == "mlflow"


@pytest.mark.parametrize(
    ("env", "pattern"),
    [
        (
            {"CHECKPOINT_AUTH": "header"},
            r"CHECKPOINT_AUTH=header needs CHECKPOINT_TRUSTED_PROXIES: .* e\.g\. "
            r"CHECKPOINT_TRUSTED_PROXIES=10\.0\.0\.5/32,127\.0\.0\.1/32",
        ),
        (
            {"CHECKPOINT_AUTH": "header", "CHECKPOINT_TRUSTED_PROXIES": "10.0.0.300/32"},
            r"CHECKPOINT_TRUSTED_PROXIES='10\.0\.0\.300/32': .*; expected CIDRs like 10\.0\.0\.0/24",
        ),
        ({"CHECKPOINT_AUTH": "kerberos"}, r"CHECKPOINT_AUTH='kerberos' is not one of none, header, mlflow"),
    ],
    ids=["no-proxies", "bad-cidr", "unknown-mode"],
)
def test_bad_configuration_names_the_variable(env, pattern):
    with pytest.raises(ValueError, match=pattern):
        identity.from_env("http://127.0.0.1:1", env)


def test_header_mode_needs_trusted_proxies():
    with pytest.raises(identity.IdentityError, match="CHECKPOINT_TRUSTED_PROXIES"):
        identity.from_env("http://127.0.0.1:1", {"CHECKPOINT_AUTH": "header"})
    with pytest.raises(identity.IdentityError, match="expected CIDRs"):
        identity.from_env("http://127.0.0.1:1", {"CHECKPOINT_AUTH": "header", "CHECKPOINT_TRUSTED_PROXIES": "nonsense"})
    with pytest.raises(identity.IdentityError, match="not one of"):
        identity.from_env("http://127.0.0.1:1", {"CHECKPOINT_AUTH": "ldap"})
