"""The first thing to break if the wiring breaks: health, and one call proxied to MLflow."""


def test_healthz(client):
    answer = client.get("/checkpoint/healthz")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ok"}


def test_search_goes_through_to_mlflow(served_checkpoint):
    import requests

    answer = requests.get(f"{served_checkpoint.url}/api/2.0/mlflow/registered-models/search", timeout=30)
    assert answer.status_code == 200
    assert "registered_models" in answer.json() or answer.json() == {}
