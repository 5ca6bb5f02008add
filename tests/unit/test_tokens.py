"""tokens.py and web/scopes.py, pure: the secret's shape and hash, who may give which scope,
which scope a route needs, and that a token's reader asks about its owner, in the call's workspace."""

from __future__ import annotations

import hashlib
import re

import pytest

from checkpoint.clock import SYSTEM
from checkpoint.identity import User, bearer_token
from checkpoint.review.visibility import reader_for
from checkpoint.tokens import ELEVATED, OwnerLookup, TokenError, TokenService, digest, new_secret
from checkpoint.web.scopes import scope_of, token_scope


def test_a_secret_is_prefixed_random_and_hashed_with_sha256():
    first, second = new_secret(), new_secret()
    assert re.fullmatch(r"cpt_[A-Za-z0-9_-]{43}", first) and first != second
    assert digest(first) == hashlib.sha256(first.encode()).hexdigest()


@pytest.mark.parametrize(
    ("header", "found"),
    [
        ("Bearer cpt_abc", "cpt_abc"),
        ("bearer   cpt_abc ", "cpt_abc"),
        ("Bearer mlflow-token", None),  # an MLflow bearer token is MLflow's business
        ("Basic YWxpY2U6eA==", None),
        ("", None),
    ],
)
def test_only_a_bearer_cpt_header_is_a_checkpoint_token(header, found):
    assert bearer_token({"HTTP_AUTHORIZATION": header}) == found


def test_scope_of_a_view_reads_for_gets_and_refuses_undeclared_writes():
    def plain():
        return None

    @token_scope("status")
    def statuses():
        return None

    @token_scope(None)
    def tokens():
        return None

    assert scope_of(plain, "GET") == "read"
    assert scope_of(plain, "POST") is None
    assert scope_of(statuses, "POST") == "status"
    assert scope_of(tokens, "GET") is None


def test_may_limits_only_token_callers():
    assert User("alice").may("review")
    assert User("alice", scopes=frozenset({"read"})).may("read")
    assert not User("alice", scopes=frozenset({"read"})).may("request")


class _NoStore:
    """A store any call to which fails the test: validation must refuse before storing."""

    def __getattr__(self, name):
        raise AssertionError(f"the store was called ({name}) for a refused token request")


def _service(elevated=frozenset()) -> TokenService:
    return TokenService(_NoStore(), SYSTEM, OwnerLookup(frozenset()), frozenset(elevated), 90)  # type: ignore[arg-type]


def test_elevated_scopes_are_offered_only_to_listed_users():
    service = _service({"bob"})
    assert set(service.allowed_scopes(User("bob"))) >= ELEVATED
    assert not set(service.allowed_scopes(User("alice"))) & ELEVATED
    with pytest.raises(TokenError, match="CHECKPOINT_TOKEN_ELEVATED_USERS") as refused:
        service.create(User("alice"), "ci", ["read", "review"], 7)
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("user", "status"),
    [(User("alice", scopes=frozenset({"read"}), token_id=1), 403), (User("anonymous"), 401)],
)
def test_only_a_real_login_manages_tokens(user, status):
    for action in (lambda s: s.create(user, "ci", ["read"], 7), lambda s: s.list(user), lambda s: s.revoke(user, 1)):
        with pytest.raises(TokenError) as refused:
            action(_service())
        assert refused.value.status == status


@pytest.mark.parametrize("days", [0, 91, True, 1.5, "7", None])
def test_a_life_outside_one_to_max_days_is_refused(days):
    with pytest.raises(TokenError, match="expires_in_days"):
        _service().create(User("alice"), "ci", ["read"], days)


class _Registry:
    """Records which workspace and which user each read-right question was asked about."""

    def __init__(self, workspace: str = "", asked: list | None = None) -> None:
        self.workspace = workspace
        self.asked = [] if asked is None else asked

    def in_workspace(self, workspace: str) -> _Registry:
        return _Registry(workspace, self.asked)

    def user_can_read(self, username: str, model: str) -> bool:
        self.asked.append((self.workspace, username, model))
        return self.workspace == "team-a"

    def can_read(self, authorization: str, model: str, workspace: str = "") -> bool:
        raise AssertionError("a token caller has no MLflow credentials to ask with")


def test_a_token_reader_asks_about_its_owner_in_the_calls_workspace():
    registry = _Registry()
    owner = User("alice", scopes=frozenset({"read"}), token_id=4)
    reader = reader_for("mlflow", registry, owner, {"HTTP_AUTHORIZATION": "Bearer cpt_x"})  # type: ignore[arg-type]
    assert reader.can_read("fraud", "team-a")
    assert not reader.can_read("fraud", "team-b")  # her rights in A open nothing in B
    assert registry.asked == [("team-a", "alice", "fraud"), ("team-b", "alice", "fraud")]


def test_an_owner_mlflow_no_longer_knows_is_no_owner():
    lookup = OwnerLookup(frozenset(), mlflow_user=lambda name: {"username": name, "is_admin": True} if name == "root" else None)
    assert lookup("gone") is None
    found = lookup("root")
    assert found is not None and found.is_admin
