"""The request page's timeline against a real MLflow: one approval that applies is one line,
and Checkpoint's steps are Checkpoint's, not the approver's (issue 17 §4.8)."""

from __future__ import annotations

import html
import re

import requests

from tests.support.governed import api, make_model


def _timeline(base: str, request_id: int) -> list[str]:
    """The text of each line of the page's timeline, tags dropped, spaces squeezed."""
    page = requests.get(f"{base}/checkpoint/requests/{request_id}", auth=("carol", "x"), timeout=30)
    assert page.status_code == 200, page.text
    section = page.text.split('<ol class="cp-timeline">', 1)[1].split("</ol>", 1)[0]
    items = section.split("<li")[1:]
    return [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", "<li" + li))).strip() for li in items]


def test_an_approval_that_applies_is_one_line(sqlite_checkpoint, mlflow_server):
    base = sqlite_checkpoint.url
    name, (_v1, v2) = make_model(mlflow_server.url)
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
    opened = api(base, "POST", "/requests", "alice", json={"change": change, "title": "v2 <b>now</b>"})
    assert opened.status_code == 201, opened.text
    request_id = opened.json()["id"]
    approved = api(base, "POST", f"/requests/{request_id}/reviews", "bob", json={"verdict": "approve", "comment": "ship it"})
    assert approved.json()["state"] == "applied", approved.text
    stored = api(base, "GET", f"/requests/{request_id}", "carol").json()["events"]
    assert [e["kind"] for e in stored][-4:] == ["review_approved", "approved", "applying", "applied"]  # the log keeps every step

    lines = _timeline(base, request_id)
    assert len(lines) == 2, lines
    assert re.fullmatch(r"\S+ \S+ alice opened the request", lines[0]), lines
    assert re.fullmatch(rf"\S+ \S+ bob approved — ship it · Checkpoint applied it — .*{re.escape(name)}.*", lines[1]), lines
    assert not any("bob applying" in line or "bob applied" in line for line in lines)
