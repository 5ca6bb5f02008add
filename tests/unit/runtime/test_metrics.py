"""Metrics without a server: which route class a call counts under (the table moved here from
tests/integration/test_operations.py), and the gauges a scrape reads from the store (a scrape
answers even when the database does not)."""

from __future__ import annotations

import pytest

from checkpoint.runtime import metrics


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "/checkpoint/requests/1", "checkpoint"),
        ("GET", "/checkpoint", "checkpoint"),
        ("GET", "/checkpointx", "ui"),
        ("GET", "/", "ui"),
        ("GET", "/static-files/app.js", "ui"),
        ("GET", "/api/2.0/mlflow/registered-models/get", "api_read"),
        ("GET", "/api/2.0/mlflow/registered-models/search", "api_read"),
        ("POST", "/api/2.0/mlflow/runs/log-metric", "api_write"),
        ("GET", "/static-files/static/js/main.js", "ui"),
        ("GET", "/checkpoint/requests", "checkpoint"),
        ("POST", "/ajax-api/2.0/mlflow/runs/search", "api_read"),
        ("POST", "/api/2.0/mlflow/registered-models/get-latest-versions", "api_read"),
        ("POST", "/api/2.0/mlflow/registered-models/alias", "api_write"),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete", "api_write"),
        ("POST", "/graphql", "api_write"),
        ("GET", "/graphql", "api_read"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/r/x", "artifacts_upload"),
        ("POST", "/api/2.0/mlflow-artifacts/mpu/create/1/r/x", "artifacts_upload"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/1/r/x", "artifacts_download"),
        ("DELETE", "/api/2.0/mlflow-artifacts/artifacts/1/r/x", "api_write"),
    ],
)
def test_route_class(method, path, route):
    assert metrics.route_class(method, path) == route
    assert route in metrics.ROUTES


class Counts:
    """The two store reads a scrape makes."""

    def __init__(self, broken: Exception | None = None) -> None:
        self.broken = broken

    def count(self, state: str) -> int:
        if self.broken is not None:
            raise self.broken
        return {"open": 3, "approved": 1, "applying": 0, "failed": 2}[state]

    def delivery_backlog(self) -> int:
        return 5


def scrape(store) -> str:
    return metrics.exposition(metrics.registry(store)).decode()


def test_the_store_gauges(monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    text = scrape(Counts())
    assert "checkpoint_database_up 1.0" in text
    for state, number in (("open", 3), ("approved", 1), ("applying", 0), ("failed", 2)):
        assert f'checkpoint_promote_requests{{state="{state}"}} {number}.0' in text
    assert "checkpoint_webhook_backlog 5.0" in text
    assert "# TYPE checkpoint_requests_total counter" in text


def test_a_scrape_answers_when_the_database_does_not(monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    text = scrape(Counts(OSError("connection refused\nmore")))
    assert "checkpoint_database_up 0.0" in text
    assert "checkpoint_promote_requests" not in text and "checkpoint_webhook_backlog" not in text


def test_counted_calls_show_by_route_and_status(monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    before = scrape(Counts())
    metrics.count_request("api_write", "201 CREATED")
    metrics.count_request("api_write", "201 CREATED")
    after = scrape(Counts())

    def value(text: str) -> float:
        line = next(
            (x for x in text.splitlines() if x.startswith('checkpoint_requests_total{route="api_write",status="201"}')), ""
        )
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    assert value(after) - value(before) == 2.0
