"""The promote request's life against a real MLflow, on SQLite and PostgreSQL.

Exactly-once apply under racing reviewers and racing replicas; retried calls that find
their request; stale approvals; apply failures (MLflow refusing, MLflow down) and retry;
changes that became true on their own; and the author's and reviewers' own actions.
Every check reads MLflow directly and the events table itself, not only the API's answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
import sqlalchemy as sa
import urllib3
from mlflow import MlflowClient
from mlflow.exceptions import RestException

from checkpoint import create_app
from checkpoint.demo.mlflow_server import free_port
from checkpoint.services import services
from checkpoint.storage.models import EventRow, RequestRow
from tests.support.governed import api, make_model, unique
from tests.support.race import race
from tests.support.serving import served

TRIALS = 5


# -- helpers ---------------------------------------------------------------------------


def direct(mlflow_server) -> MlflowClient:
    """The registry as it really is (straight to MLflow, not through Checkpoint)."""
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def engine_of(live) -> sa.Engine:
    return services(live.app).engine


@contextmanager
def another_checkpoint(registry_url: str, database_url: str, data_dir) -> Iterator[str]:
    """A second Checkpoint (another replica, or one whose MLflow is down) on the same database."""
    application = create_app({"registry_url": registry_url, "database_url": database_url, "data_dir": data_dir})
    with served(application) as url:
        yield url


def open_request(base: str, change: dict, user: str = "alice", **fields) -> dict:
    answer = api(base, "POST", "/requests", user=user, json={"change": change, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def review(base: str, request_id: int, user: str, verdict: str = "approve") -> requests.Response:
    return api(base, "POST", f"/requests/{request_id}/reviews", user=user, json={"verdict": verdict})


def get(base: str, request_id: int) -> dict:
    answer = api(base, "GET", f"/requests/{request_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def event_rows(engine: sa.Engine, request_id: int) -> list[tuple[str, dict]]:
    """(kind, data) of every event of the request, in order, from the table itself."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(EventRow.kind, EventRow.data).where(EventRow.request_id == request_id).order_by(EventRow.id)
        )
        return [(kind, data) for kind, data in rows]


def event_counts(engine: sa.Engine, request_id: int) -> Counter:
    return Counter(kind for kind, _ in event_rows(engine, request_id))


def request_count(engine: sa.Engine, model: str, state: str | None = None) -> int:
    query = sa.select(sa.func.count(RequestRow.id)).where(RequestRow.model_name == model)
    if state:
        query = query.where(RequestRow.state == state)
    with engine.connect() as conn:
        return conn.scalar(query)


def alias_holder(client: MlflowClient, name: str, alias: str = "champion") -> str:
    return client.get_model_version_by_alias(name, alias).version


def assert_applied_once(engine: sa.Engine, request_id: int, answers: list[requests.Response]) -> None:
    """Racing reviewers: one apply. The loser's review lands (200) or finds the request closed (409)."""
    assert {a.status_code for a in answers} <= {200, 409}, [a.text for a in answers]
    assert any(a.status_code == 200 and a.json()["state"] == "applied" for a in answers), [a.text for a in answers]
    for lost in (a for a in answers if a.status_code == 409):
        assert lost.json()["error_code"] == "INVALID_STATE" and "not open" in lost.json()["message"]
    counts = event_counts(engine, request_id)
    assert counts["approved"] == 1, counts
    assert counts["applying"] == 1, counts
    assert counts["applied"] == 1, counts
    assert counts["apply_failed"] == 0, counts


# -- exactly once ----------------------------------------------------------------------


def test_racing_approvals_apply_exactly_once(live_checkpoint, mlflow_server):
    client = direct(mlflow_server)
    name, versions = make_model(mlflow_server.url)
    client.set_registered_model_alias(name, "champion", versions[0])
    base, engine = live_checkpoint.url, engine_of(live_checkpoint)
    for trial in range(TRIALS):
        target = versions[(trial + 1) % 2]  # v2, v1, v2, ...: every trial really moves the alias
        opened = open_request(base, {"kind": "set_alias", "name": name, "alias": "champion", "version": target})
        answers = race(lambda rid=opened["id"]: review(base, rid, "bob"), lambda rid=opened["id"]: review(base, rid, "dave"))
        assert_applied_once(engine, opened["id"], answers)
        assert get(base, opened["id"])["state"] == "applied"
        assert alias_holder(client, name) == target, f"trial {trial}"


def test_two_replicas_racing_apply_exactly_once(live_checkpoint, mlflow_server, tmp_path):
    """Two Checkpoint processes' worth of app on one database: the database decides, not a lock in memory."""
    client = direct(mlflow_server)
    name, versions = make_model(mlflow_server.url)
    client.set_registered_model_alias(name, "champion", versions[0])
    engine = engine_of(live_checkpoint)
    with another_checkpoint(mlflow_server.url, live_checkpoint.database_url, tmp_path / "replica") as replica:
        bases = (live_checkpoint.url, replica)
        for trial in range(3):
            target = versions[(trial + 1) % 2]
            opened = open_request(bases[trial % 2], {"kind": "set_alias", "name": name, "alias": "champion", "version": target})
            answers = race(
                lambda rid=opened["id"], t=trial: review(bases[t % 2], rid, "bob"),
                lambda rid=opened["id"], t=trial: review(bases[(t + 1) % 2], rid, "dave"),
            )
            assert_applied_once(engine, opened["id"], answers)
            assert alias_holder(client, name) == target, f"trial {trial}"
            # Both replicas tell the same story.
            assert get(replica, opened["id"])["events"] == get(live_checkpoint.url, opened["id"])["events"]


# -- retries, duplicates, coexisting requests, stale approvals ------------------------------


def governed_alias(base: str, user: str, name: str, version: str) -> tuple[int, str]:
    """The MLflow REST call a pipeline makes, through Checkpoint: (request id, opened/exists)."""
    answer = requests.post(
        f"{base}/api/2.0/mlflow/registered-models/alias",
        json={"name": name, "alias": "champion", "version": version},
        auth=(user, "x"),
        timeout=30,
    )
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["error_code"] == "PERMISSION_DENIED"
    assert int(answer.headers["X-Checkpoint-Request"]) == body["checkpoint"]["request_id"]
    return body["checkpoint"]["request_id"], body["checkpoint"]["action"]


def test_repeated_calls_find_their_request_and_stale_approvals_are_dismissed(live_checkpoint, mlflow_server):
    client = direct(mlflow_server)
    name, (v1, v2, v3) = make_model(mlflow_server.url, versions=3)
    client.set_registered_model_alias(name, "champion", v1)
    base, engine = live_checkpoint.url, engine_of(live_checkpoint)

    # alice's pipeline fires the same call twice at once, then retries it: one request.
    first = race(lambda: governed_alias(base, "alice", name, v2), lambda: governed_alias(base, "alice", name, v2))
    assert first[0][0] == first[1][0], first
    assert sorted(action for _, action in first) == ["request_exists", "request_opened"]
    alices = first[0][0]
    assert governed_alias(base, "alice", name, v2) == (alices, "request_exists")
    assert request_count(engine, name) == 1
    assert event_counts(engine, alices)["opened"] == 1

    # carol asks for the same change: her own request; erin asks for another version of the same alias.
    carols, action = governed_alias(base, "carol", name, v2)
    assert action == "request_opened" and carols != alices
    erins, _ = governed_alias(base, "erin", name, v3)
    assert request_count(engine, name, state="open") == 3
    listed = api(base, "GET", f"/requests?model={name}&target=alias:champion&state=open").json()["requests"]
    assert sorted(r["id"] for r in listed) == sorted([alices, carols, erins])
    assert {r["champion"]["version"] for r in listed} == {v1}

    # Applying alice's request moves the champion under erin's.
    done = review(base, alices, "dave")
    assert done.status_code == 200 and done.json()["state"] == "applied", done.text
    assert alias_holder(client, name) == v2
    assert get(base, erins)["state"] == "open"  # nothing happens to the others until their own approval

    stale = review(base, erins, "dave")
    assert stale.status_code == 200, stale.text
    reopened = stale.json()
    assert reopened["state"] == "open"
    assert "approvals dismissed" in reopened["state_reason"]
    assert f"the champion moved since the reviews (v{v1} → v{v2})" in reopened["state_reason"]
    assert reopened["approvals"]["count"] == 0
    assert [(r["reviewer"], r["dismissed"]) for r in reopened["reviews"]] == [("dave", True)]
    assert "champion moved" in reopened["reviews"][0]["dismissed_reason"]
    assert reopened["champion"]["version"] == v2  # the reviewers now see what it would replace
    assert [e["kind"] for e in reopened["events"]][-3:] == ["approvals_dismissed", "snapshots_refreshed", "reopened"]
    assert alias_holder(client, name) == v2  # MLflow untouched by the stale approval

    again = review(base, erins, "bob")
    assert again.status_code == 200 and again.json()["state"] == "applied", again.text
    assert alias_holder(client, name) == v3
    counts = event_counts(engine, erins)
    assert (counts["applying"], counts["applied"], counts["reopened"]) == (2, 1, 1), counts
    assert get(base, carols)["state"] == "open" and get(base, carols)["reviews"] == []


# -- apply failures ----------------------------------------------------------------------


def test_mlflow_refusing_the_apply_fails_keeps_everything_and_retry_applies(live_checkpoint, mlflow_server):
    client = direct(mlflow_server)
    name, _ = make_model(mlflow_server.url, versions=1)
    new_name = unique("renamed")
    base, engine = live_checkpoint.url, engine_of(live_checkpoint)
    opened = open_request(base, {"kind": "rename", "name": name, "new_name": new_name}, title="rename it")
    assert api(base, "POST", f"/requests/{opened['id']}/comments", user="carol", json={"body": "ok by me"}).status_code == 201
    client.create_registered_model(new_name)  # the name is taken behind Checkpoint's back

    failed = review(base, opened["id"], "dave")
    assert failed.status_code == 200, failed.text
    body = failed.json()
    print("apply_result:", body["apply_result"])
    assert body["state"] == "failed"
    assert "RESOURCE_ALREADY_EXISTS" in body["apply_result"] and new_name in body["apply_result"]
    assert body["state_reason"].startswith("MLflow refused or could not be reached")
    assert [(r["reviewer"], r["verdict"], r["dismissed"]) for r in body["reviews"]] == [("dave", "approve", False)]
    assert [(c["author"], c["body"]) for c in body["comments"]] == [("carol", "ok by me")]
    assert [e["kind"] for e in body["events"]] == [
        "opened",
        "commented",
        "review_approved",
        "approved",
        "applying",
        "apply_failed",
    ]
    assert "RESOURCE_ALREADY_EXISTS" in body["events"][-1]["data"]["error"]
    assert client.get_registered_model(name).name == name  # nothing renamed

    # Retried before the cause is fixed: fails again, with a fresh event.
    again = api(base, "POST", f"/requests/{opened['id']}/retry", user="dave")
    assert again.status_code == 200 and again.json()["state"] == "failed", again.text
    assert event_counts(engine, opened["id"])["apply_failed"] == 2

    client.delete_registered_model(new_name)
    # Two people press retry at once: one apply.
    answers = race(
        lambda: api(base, "POST", f"/requests/{opened['id']}/retry", user="bob"),
        lambda: api(base, "POST", f"/requests/{opened['id']}/retry", user="dave"),
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    final = get(base, opened["id"])
    assert final["state"] == "applied" and final["applied_at"], final
    assert new_name in final["apply_result"]
    counts = event_counts(engine, opened["id"])
    assert (counts["retried"], counts["applying"], counts["apply_failed"], counts["applied"]) == (2, 3, 2, 1), counts
    assert len(final["reviews"]) == 1 and len(final["comments"]) == 1
    assert client.get_registered_model(new_name).latest_versions[0].version == "1"
    with pytest.raises(RestException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(name)


def test_challenger_deleted_in_mlflow_reopens_then_apply_fails_with_mlflows_404(live_checkpoint, mlflow_server):
    client = direct(mlflow_server)
    name, (v1, v2) = make_model(mlflow_server.url)
    client.set_registered_model_alias(name, "champion", v1)
    base, engine = live_checkpoint.url, engine_of(live_checkpoint)
    opened = open_request(base, {"kind": "set_alias", "name": name, "alias": "champion", "version": v2})
    client.delete_model_version(name, v2)

    first = review(base, opened["id"], "dave").json()
    assert first["state"] == "open", first
    assert "the challenger changed since the reviews" in first["state_reason"]
    assert first["challenger"] is None  # what reviewers see now: no such version

    second = review(base, opened["id"], "bob").json()
    print("apply_result:", second["apply_result"])
    assert second["state"] == "failed", second
    assert "RESOURCE_DOES_NOT_EXIST" in second["apply_result"]
    assert alias_holder(client, name) == v1

    retried = api(base, "POST", f"/requests/{opened['id']}/retry", user="bob")
    assert retried.status_code == 200 and retried.json()["state"] == "failed", retried.text
    assert event_counts(engine, opened["id"])["apply_failed"] == 2
    assert alias_holder(client, name) == v1


def test_mlflow_down_fails_naming_the_address_then_retry_applies(live_checkpoint, mlflow_server, tmp_path):
    client = direct(mlflow_server)
    name, (v1, v2) = make_model(mlflow_server.url)
    client.set_registered_model_alias(name, "champion", v1)
    base, engine = live_checkpoint.url, engine_of(live_checkpoint)
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
    opened = open_request(base, change)
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there

    with another_checkpoint(f"http://{dead}", live_checkpoint.database_url, tmp_path / "down") as down:
        before = request_count(engine, name)
        refused = api(down, "POST", "/requests", user="carol", json={"change": change})
        assert refused.status_code == 502, refused.text
        assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE" and dead in refused.json()["message"]
        assert request_count(engine, name) == before  # nothing half-opened
        which = api(down, "GET", f"/which?model={name}&alias=champion")
        assert which.status_code == 502 and dead in which.json()["message"], which.text
        paths = api(down, "GET", "/openapi.json").json()["paths"]
        assert "502" in paths["/requests"]["post"]["responses"] and "502" in paths["/which"]["get"]["responses"]

        failed = review(down, opened["id"], "dave")
        assert failed.status_code == 200, failed.text
        body = failed.json()
        print("apply_result:", body["apply_result"])
        assert body["state"] == "failed"
        assert dead in body["apply_result"] and "unreachable" in body["apply_result"]
        assert alias_holder(client, name) == v1

    retried = api(base, "POST", f"/requests/{opened['id']}/retry", user="dave")
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "applied"
    assert alias_holder(client, name) == v2
    counts = event_counts(engine, opened["id"])
    assert (counts["apply_failed"], counts["retried"], counts["applying"], counts["applied"]) == (1, 1, 2, 1), counts
    assert [r["reviewer"] for r in retried.json()["reviews"]] == ["dave"]


@contextmanager
def mlflow_answering_nonsense(upstream: str, write_path: str) -> Iterator[str]:
    """A loopback stand-in for a broken MLflow (or a proxy in front of it): reads go to the real
    server, the one write answers 200 with an empty object. No real server does that on demand."""
    http = urllib3.PoolManager(retries=False)

    def app(environ, start_response):
        path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
        if environ["REQUEST_METHOD"] == "POST" and path.endswith(write_path):
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b"{}"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        answer = http.request(
            environ["REQUEST_METHOD"],
            f"{upstream}{path}" + (f"?{query}" if query else ""),
            body=environ["wsgi.input"].read(length) if length else None,
            headers={"Content-Type": "application/json"},
        )
        start_response(f"{answer.status} Upstream", [("Content-Type", answer.headers.get("Content-Type", "text/plain"))])
        return [answer.data]

    with served(app, close=False) as url:
        yield url


def test_malformed_mlflow_answer_fails_the_apply_instead_of_leaving_it_applying(live_checkpoint, mlflow_server, tmp_path):
    client = direct(mlflow_server)
    name, (_, v2) = make_model(mlflow_server.url)
    base, engine = live_checkpoint.url, engine_of(live_checkpoint)
    opened = open_request(base, {"kind": "transition", "name": name, "version": v2, "stage": "Staging"})

    with (
        mlflow_answering_nonsense(mlflow_server.url, "/model-versions/transition-stage") as broken,
        another_checkpoint(broken, live_checkpoint.database_url, tmp_path / "broken") as checkpoint,
    ):
        answer = review(checkpoint, opened["id"], "dave")
    assert answer.status_code == 200, answer.text
    print("apply_result:", answer.json()["apply_result"])
    assert answer.json()["state"] == "failed"  # not stuck in 'applying', where nothing could move it again
    # The registry adapter names what was missing (MalformedAnswer), not a bare KeyError.
    assert answer.json()["apply_result"] == (
        "BAD_RESPONSE: MLflow's answer to /api/2.0/mlflow/model-versions/transition-stage has no 'model_version'"
    )
    assert client.get_model_version(name, v2).current_stage == "None"

    retried = api(base, "POST", f"/requests/{opened['id']}/retry", user="dave")
    assert retried.status_code == 200 and retried.json()["state"] == "applied", retried.text
    assert client.get_model_version(name, v2).current_stage == "Staging"
    counts = event_counts(engine, opened["id"])
    assert (counts["apply_failed"], counts["applied"]) == (1, 1), counts


# -- already true ------------------------------------------------------------------------


def test_change_already_made_in_mlflow_is_recorded_applied_without_touching_mlflow(live_checkpoint, mlflow_server):
    client = direct(mlflow_server)
    name, (v1, v2) = make_model(mlflow_server.url)
    base, engine = live_checkpoint.url, engine_of(live_checkpoint)
    opened = open_request(base, {"kind": "transition", "name": name, "version": v2, "stage": "Production"})
    client.transition_model_version_stage(name, v2, "Production")
    stamp = client.get_model_version(name, v2).last_updated_timestamp

    answer = review(base, opened["id"], "dave")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "applied"
    assert body["apply_result"].startswith("already true in MLflow, nothing applied")
    kinds = [(kind, data.get("already_true")) for kind, data in event_rows(engine, opened["id"])]
    assert kinds[-2:] == [("applying", None), ("applied", True)], kinds
    after = client.get_model_version(name, v2)
    assert after.current_stage == "Production"
    assert after.last_updated_timestamp == stamp  # a second transition would have bumped it
    assert client.get_model_version(name, v1).current_stage == "None"


# -- reject, withdraw, edit, comment -------------------------------------------------------


def test_reject_withdraw_edit_and_comment(live_checkpoint, mlflow_server):
    client = direct(mlflow_server)
    name, (v1, v2) = make_model(mlflow_server.url)
    client.set_registered_model_alias(name, "champion", v1)
    base, engine = live_checkpoint.url, engine_of(live_checkpoint)
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": v2}
    rid = open_request(base, change, title="promote v2")["id"]

    # Edits: the author's, while open.
    assert api(base, "PATCH", f"/requests/{rid}", user="bob", json={"title": "mine now"}).status_code == 403
    edited = api(
        base, "PATCH", f"/requests/{rid}", user="alice", json={"title": "promote v2 (AUC +3%)", "description": "see run"}
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["title"], edited.json()["description"]) == ("promote v2 (AUC +3%)", "see run")
    assert edited.json()["events"][-1]["kind"] == "edited"
    assert edited.json()["events"][-1]["data"]["fields"] == ["description", "title"]

    commented = api(base, "POST", f"/requests/{rid}/comments", user="bob", json={"body": "why now?"})
    assert commented.status_code == 201, commented.text
    assert [(c["author"], c["body"]) for c in commented.json()["comments"]] == [("bob", "why now?")]

    rejected = review(base, rid, "dave", "reject")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["state"] == "rejected" and rejected.json()["state_reason"] == "rejected by dave"
    assert alias_holder(client, name) == v1
    # Closed: no more edits, reviews or withdrawal; comments still welcome.
    assert api(base, "PATCH", f"/requests/{rid}", user="alice", json={"title": "again"}).status_code == 409
    assert review(base, rid, "bob").status_code == 409
    assert api(base, "POST", f"/requests/{rid}/withdraw", user="alice").status_code == 409
    assert api(base, "POST", f"/requests/{rid}/comments", user="alice", json={"body": "fair"}).status_code == 201
    counts = event_counts(engine, rid)
    assert (counts["rejected"], counts["applying"], counts["applied"]) == (1, 0, 0), counts

    # The same change asked again is a new request (the rejected one is closed); only alice may withdraw it.
    second = open_request(base, change)["id"]
    assert second != rid
    refused = api(base, "POST", f"/requests/{second}/withdraw", user="bob")
    assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED", refused.text
    withdrawn = api(base, "POST", f"/requests/{second}/withdraw", user="alice")
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "withdrawn", withdrawn.text
    assert review(base, second, "dave").status_code == 409
    assert alias_holder(client, name) == v1
    assert event_counts(engine, second)["withdrawn"] == 1
