"""MLflow's REST API in one workspace (``mlflow server --enable-workspaces``), straight, without
Checkpoint: for setting up models in several workspaces and reading back what an attack did."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import requests

__all__ = ["HEADER", "Direct", "make_workspace"]

HEADER = "X-MLFLOW-WORKSPACE"


@dataclass
class Direct:
    """MLflow's REST API in one workspace ("" = the default one), without Checkpoint."""

    url: str
    workspace: str = ""

    def call(
        self, method: str, endpoint: str, body: dict | None = None, query: dict | None = None, ok: bool = True
    ) -> requests.Response:
        headers = {HEADER: self.workspace} if self.workspace else {}
        answer = requests.request(
            method, f"{self.url}/api/2.0/mlflow/{endpoint}", json=body, params=query, headers=headers, timeout=30
        )
        if ok:
            assert answer.status_code == 200, f"{method} {endpoint} in {self.workspace or 'default'}: {answer.text}"
        return answer

    def version(self, name: str, version: str) -> dict:
        return self.call("GET", "model-versions/get", query={"name": name, "version": version}).json()["model_version"]

    def alias(self, name: str, alias: str) -> str | None:
        answer = self.call("GET", "registered-models/alias", query={"name": name, "alias": alias}, ok=False)
        return answer.json()["model_version"]["version"] if answer.status_code == 200 else None

    def exists(self, name: str) -> bool:
        answer = self.call("GET", "registered-models/get", query={"name": name}, ok=False)
        assert answer.status_code in (200, 404), answer.text
        return answer.status_code == 200

    def state(self, name: str) -> dict:
        """Everything these tests change: existence, each version's stage, the champion."""
        if not self.exists(name):
            return {"exists": False}
        found = self.call("GET", "model-versions/search", query={"filter": f"name = '{name}'"}).json()
        stages = {v["version"]: v["current_stage"] for v in found.get("model_versions", [])}
        return {"exists": True, "stages": stages, "champion": self.alias(name, "champion")}

    def seed(self, name: str, production: bool, label: str) -> dict[str, str]:
        """Model ``name`` with v1 and v2, each from its own run whose param ``trained_in`` is
        ``label`` (so a diff shows which workspace it read); with ``production``, v1 is in
        Production and holds ``champion``. Returns {version: run_id}."""
        experiment = self.call("GET", "experiments/get-by-name", query={"experiment_name": "ws-tests"}, ok=False)
        if experiment.status_code == 200:
            experiment_id = experiment.json()["experiment"]["experiment_id"]
        else:
            experiment_id = self.call("POST", "experiments/create", {"name": "ws-tests"}).json()["experiment_id"]
        self.call("POST", "registered-models/create", {"name": name})
        runs = {}
        for i in (1, 2):
            run = self.call("POST", "runs/create", {"experiment_id": experiment_id}).json()["run"]["info"]
            self.call("POST", "runs/log-parameter", {"run_id": run["run_id"], "key": "trained_in", "value": f"{label}-{i}"})
            self.call("POST", "runs/update", {"run_id": run["run_id"], "status": "FINISHED"})
            made = self.call(
                "POST", "model-versions/create", {"name": name, "source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]}
            ).json()
            runs[made["model_version"]["version"]] = run["run_id"]
        if production:
            self.call(
                "POST",
                "model-versions/transition-stage",
                {"name": name, "version": "1", "stage": "Production", "archive_existing_versions": False},
            )
            self.call("POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "1"})
        return runs


def make_workspace(url: str, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    answer = requests.post(f"{url}/api/3.0/mlflow/workspaces", json={"name": name}, timeout=30)
    assert answer.status_code == 201, answer.text  # MLflow answers a created workspace with 201
    return name
