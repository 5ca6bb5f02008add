"""The request as readers outside see it (``review/representation.py``): the fields the API, an
HTTP check and a webhook share, in the order an HTTP check receives them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from checkpoint.review.policy import Rule, Status
from checkpoint.review.representation import event_fields, request_fields, workspace_label
from checkpoint.storage.entities import PromoteRequest

CREATED, UPDATED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC), datetime(2026, 11, 23, 11, 30, tzinfo=UTC)
RULE = Rule(name="fraud", models=("fraud-*",), reviewers=("bob", "dave"), required_approvals=2)
STATUS = Status(count=1, required=2, approvers=("bob",), awaited=("dave",))


def request(**changes) -> PromoteRequest:
    fields = {
        "id": 7,
        "kind": "set_alias",
        "model_name": "fraud-eu",
        "version": "3",
        "target": "alias:champion",
        "change": {"kind": "set_alias", "name": "fraud-eu", "alias": "champion", "version": "3"},
        "title": "Ship v3",
        "description": "better recall",
        "author": "alice",
        "state": "open",
        "state_reason": "",
        "challenger": {"name": "fraud-eu", "version": "3", "digest": "ab" * 32},
        "champion": None,
        "created_at": CREATED,
        "updated_at": UPDATED,
        "applied_at": None,
        "apply_result": "",
        "named_reviewers": ("dave",),
    }
    return PromoteRequest(**{**fields, **changes})


@pytest.mark.parametrize(("workspace", "label"), [("", "default"), (None, "default"), ("team-b", "team-b")])
def test_the_default_workspace_is_named(workspace, label):
    assert workspace_label(workspace) == label


def test_request_fields_in_the_order_an_http_check_receives_them():
    out = request_fields(request(), STATUS, RULE, {"url": "https://cp/checkpoint/requests/7"})
    assert (
        list(out)
        == (
            "id url kind model workspace version target change title description author state state_reason "
            "challenger champion approvals named_reviewers rule created_at updated_at rollback"
        ).split()
    )
    assert out["model"] == "fraud-eu" and out["workspace"] == "default"
    assert out["approvals"] == {
        "count": 1,
        "required": 2,
        "approvers": ["bob"],
        "awaited": ["dave"],
        "met": False,
        "expired": [],
    }
    assert out["named_reviewers"] == ["dave"]
    assert out["rule"] == {"name": "fraud", "description": RULE.describe()}
    assert (out["created_at"], out["updated_at"]) == ("2026-11-23T10:00:00+00:00", "2026-11-23T11:30:00+00:00")
    assert out["rollback"] is None  # an ordinary request


def test_a_rollback_shows_its_record():
    found = {"target": "alias:champion", "version": "3", "replacing": ["5"], "verified": True}
    assert request_fields(request(rollback=found), STATUS, RULE, {"url": None})["rollback"] == found


@pytest.mark.parametrize(
    ("links", "after_id"),
    [
        ({"url": None}, {"url": None}),  # an HTTP check with no public URL configured
        ({"url": "u", "api_url": "a"}, {"url": "u", "api_url": "a"}),  # the API's two links
    ],
)
def test_the_callers_links_follow_the_id(links, after_id):
    out = request_fields(request(), STATUS, RULE, links)
    assert list(out)[1 : 1 + len(links)] == list(after_id) and all(out[k] == v for k, v in after_id.items())


def test_an_empty_challenger_reads_as_none():
    assert request_fields(request(challenger={}), STATUS, RULE, {})["challenger"] is None


def test_an_event_names_the_request_as_the_api_does():
    item = request(workspace="team-b")
    shown = request_fields(item, STATUS, RULE, {})
    seen = event_fields(
        model=item.model_name,
        workspace=item.workspace,
        target=item.target,
        version=item.version,
        title=item.title,
        author=item.author,
        state=item.state,
    )
    assert seen == {key: shown[key] for key in seen}
    assert seen["workspace"] == "team-b"


def test_an_event_without_a_request_keeps_its_gaps():
    seen = event_fields(model="fraud", workspace="", target="alias:champion", version="4", title=None, author=None, state=None)
    assert seen == {
        "model": "fraud",
        "workspace": "default",
        "target": "alias:champion",
        "version": "4",
        "title": None,
        "author": None,
        "state": None,
    }
