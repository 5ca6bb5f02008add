"""No call through Checkpoint changes a governed stage, protected alias, protected model or
protected tag without an applied promote request.

A seeded random run (the seed is printed; set CHECKPOINT_BYPASS_SEED to replay one) of 300
mixed calls — governed and ungoverned, through the real MLflow client and as raw HTTP in the
path and body spellings MLflow accepts — against fresh, uniquely named models. MLflow's
registry is read straight from MLflow (never through Checkpoint) before and after, and the
governed part of it must be identical while nothing was approved; the ungoverned part (other
aliases and tags, descriptions, new versions in unprotected models) is allowed to move, and
must have moved, or the run proved nothing.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from urllib.parse import quote

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from checkpoint import governance
from tests.governed_helpers import make_model, unique
from tests.hostile_helpers import registry_state
from tests.proxy_helpers import raw_request

CALLS = 300
TIME_LIMIT = 240  # seconds; the run stops early rather than overrun
ALIASES = ["champion", "CHAMPION", "prod-eu", "production", "staging1", "candidate", "challenger", "shadow"]
STAGES = ["Production", "production", "STAGING", "Staging", "None", "none", "Archived", "archived"]
TAG_KEYS = ["validation_status", "VALIDATION_STATUS", "note", "owner"]
PREFIXES = ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "//api/2.0/mlflow", "/api/2.0//mlflow", "/api/2.0/preview/mlflow",
            "/mlflow/api/2.0/mlflow"]  # fmt: skip


def governed_view(state: dict, gov: governance.Governance) -> dict:
    """The part of ``registry_state`` that only an applied request may change."""
    view = {}
    for name, model in state.items():
        if model is None:
            view[name] = None
            continue
        versions = model["versions"]
        view[name] = {
            "governed_stages": {v: d["stage"] for v, d in versions.items() if gov.stage_governed(d["stage"])},
            "protected_aliases": {a: v for a, v in model["aliases"].items() if gov.alias_protected(a)},
            "protected_model_tags": {k: v for k, v in model["tags"].items() if gov.tag_protected(k)},
            "protected_version_tags": {
                (v, k): val for v, d in versions.items() for k, val in d["tags"].items() if gov.tag_protected(k)
            },  # fmt: skip
            "versions": sorted(versions) if gov.model_protected(name) else None,
        }
    return view


def files_view(mlflow_url: str, state: dict) -> dict[str, list]:
    """Every registered version's files (path, size), by storage location, read from MLflow."""
    out: dict[str, list] = {}
    for name, model in state.items():
        for version in (model or {}).get("versions", {}):
            uri = requests.get(f"{mlflow_url}/api/2.0/mlflow/model-versions/get-download-uri", timeout=30,
                               params={"name": name, "version": version}).json()["artifact_uri"]  # fmt: skip
            root = uri.split(":", 1)[1].lstrip("/")
            found, todo = [], [root]
            while todo and len(found) < 1000:
                path = todo.pop()
                listed = requests.get(f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts", params={"path": path}, timeout=30)
                for f in listed.json().get("files", []):
                    child = f"{path}/{f['path'].rsplit('/', 1)[-1]}"
                    (todo.append(child) if f.get("is_dir") else found.append((child, f.get("file_size"))))
            out[root] = sorted(found)
    return out


class Run:
    """The random calls, against model ``a`` (champion v1 in Production, v2 in Staging, v3 idle)
    and the protected ``prod.`` model ``p``."""

    def __init__(self, base: str, mlflow_url: str, seed: int) -> None:
        self.base = base
        self.rng = random.Random(seed)
        self.client = MlflowClient(tracking_uri=base, registry_uri=base)
        self.a, versions = make_model(mlflow_url, unique("bypass"), versions=3)
        self.v1, self.v2, self.v3 = versions
        self.p, _ = make_model(mlflow_url, f"prod.{self.a}", versions=1)
        direct = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
        direct.transition_model_version_stage(self.a, self.v1, "Production")
        direct.transition_model_version_stage(self.a, self.v2, "Staging")
        direct.set_registered_model_alias(self.a, "champion", self.v1)
        direct.set_registered_model_alias(self.a, "prod-eu", self.v1)
        direct.set_model_version_tag(self.a, self.v1, "validation_status", "passed")
        direct.set_registered_model_tag(self.a, "validation_status", "passed")
        self.source = direct.get_model_version(self.a, self.v1).source
        self.roots = [direct.get_model_version_download_uri(n, v).split(":", 1)[1].lstrip("/")
                      for n, v in ((self.a, self.v1), (self.a, self.v2), (self.a, self.v3), (self.p, "1"))]  # fmt: skip
        self.outcomes: Counter[str] = Counter()

    @property
    def names(self) -> list[str]:
        return [self.a, self.p, f"{self.a}-renamed", f"prod.{self.a}-renamed"]

    # -- spellings --

    def path(self, endpoint: str) -> str:
        prefix = self.rng.choice(PREFIXES)
        if self.rng.random() < 0.2:
            endpoint = endpoint.replace("/", "%2F", 1)
        if self.rng.random() < 0.1:
            endpoint = endpoint.replace("-", "%2D", 1)
        return f"{prefix}/{endpoint}"

    def key(self, snake: str) -> str:
        head, *rest = snake.split("_")
        return head + "".join(p.title() for p in rest) if rest and self.rng.random() < 0.5 else snake

    def version(self) -> str:
        return self.rng.choice([self.v1, self.v2, self.v3, "1", "4", "5"])

    def send(self, method: str, endpoint: str, body: dict | None) -> None:
        data = json.dumps(body).encode() if body is not None else None
        if data is not None and self.rng.random() < 0.05:
            data = json.dumps(data.decode()).encode()  # a legacy client's double-encoded body
        headers = [("Authorization", "Basic YnlwYXNzOng=")]  # bypass:x
        if data is not None and (method in ("POST", "PUT") or self.rng.random() < 0.5):
            headers.append(("Content-Type", self.rng.choice(["application/json", "application/json; charset=utf-8"])))
        answer = raw_request(self.base, method, self.path(endpoint), headers, data, timeout=60)
        # MLflow answers some odd spellings with its own 500; Checkpoint itself must never fail a call.
        shown = f"{method} {endpoint}: {answer.status} {answer.body[:300]!r}"
        assert answer.status < 500 or b"Checkpoint" not in answer.body, shown
        self.outcomes[f"raw {answer.status}"] += 1

    # -- the calls --

    def raw_call(self) -> None:
        r = self.rng
        name = r.choice([self.a, self.a, self.a, self.p])
        kind = r.randrange(15)
        if kind == 0:
            self.send("POST", "registered-models/alias", {"name": name, "alias": r.choice(ALIASES), "version": self.version()})
        elif kind == 1:
            self.send("DELETE", "registered-models/alias", {"name": name, "alias": r.choice(ALIASES)})
        elif kind == 2:
            self.send("POST", "model-versions/transition-stage", {"name": name, "version": self.version(),
                      "stage": r.choice(STAGES), self.key("archive_existing_versions"): r.random() < 0.3})  # fmt: skip
        elif kind == 3:
            self.send("POST", "model-versions/set-tag", {"name": name, "version": self.version(), "key": r.choice(TAG_KEYS),
                      "value": r.choice(["passed", "failed", "x"])})  # fmt: skip
        elif kind == 4:
            self.send("DELETE", "model-versions/delete-tag", {"name": name, "version": self.version(), "key": r.choice(TAG_KEYS)})
        elif kind == 5:
            self.send("POST", "registered-models/set-tag", {"name": name, "key": r.choice(TAG_KEYS), "value": "failed"})
        elif kind == 6:
            self.send("DELETE", "registered-models/delete-tag", {"name": name, "key": r.choice(TAG_KEYS)})
        elif kind == 7:
            self.send(
                "PATCH",
                r.choice(["model-versions/update", "registered-models/update"]),
                {"name": name, "version": self.version(), "description": f"d{r.randrange(1000)}"},
            )
        elif kind == 8:
            source = r.choice([self.source, f"models:/{self.a}/{self.version()}", f"models:/{self.a}@champion"])
            self.send("POST", "model-versions/create", {"name": r.choice([self.a, self.p]), "source": source})
        elif kind == 9:
            self.send("DELETE", "model-versions/delete", {"name": name, "version": self.version()})
        elif kind == 10:
            self.send("DELETE", "registered-models/delete", {"name": name})
        elif kind == 11:
            self.send("POST", "registered-models/rename", {"name": name, self.key("new_name"):
                      r.choice([f"{self.a}-renamed", f"prod.{self.a}-renamed"])})  # fmt: skip
        elif kind in (13, 14):
            self.artifact_call()
        else:
            self.send("GET", f"registered-models/alias?name={quote(name)}&alias=champion", None)

    def artifact_call(self) -> None:
        """A write or delete under a registered version's files (or, one time in four, next to
        them in the same run, which must pass), in the routes and spellings MLflow serves."""
        r = self.rng
        root = r.choice(self.roots)
        inside = r.random() < 0.75
        target = f"{root}/{r.choice(['python_model.pkl', 'MLmodel', 'sub/x.bin'])}" if inside else f"{root}-plots/p.txt"
        if r.random() < 0.2:
            target = target.replace("/", "%2F")
        elif r.random() < 0.1:
            target = target.replace("/", "//", 1)
        prefix = r.choice(["/api/2.0", "/ajax-api/2.0", "//api/2.0", "/mlflow/api/2.0"])
        route, method = r.choice([("mlflow-artifacts/artifacts", "PUT"), ("mlflow-artifacts/artifacts", "PUT"),
                                  ("mlflow-artifacts/artifacts", "DELETE"), ("mlflow-artifacts/mpu/create", "POST")])  # fmt: skip
        if method == "DELETE" and inside and r.random() < 0.5:
            target = root.rsplit("/", r.randrange(1, 3))[0]  # the directory above
        headers = [("Authorization", "Basic YnlwYXNzOng="), ("Content-Type", "application/octet-stream")]
        answer = raw_request(self.base, method, f"{prefix}/{route}/{target}", headers, b"evil bytes", timeout=60)
        assert answer.status < 500 or b"Checkpoint" not in answer.body, answer.body[:300]
        self.outcomes[f"artifact {'inside' if inside else 'beside'} {answer.status}"] += 1

    def client_call(self) -> None:
        r, c, a = self.rng, self.client, self.a
        calls = [
            lambda: c.set_registered_model_alias(a, r.choice(ALIASES), self.version()),
            lambda: c.delete_registered_model_alias(a, r.choice(ALIASES)),
            lambda: c.transition_model_version_stage(
                a, self.version(), r.choice(STAGES), archive_existing_versions=r.random() < 0.3
            ),
            lambda: c.set_model_version_tag(a, self.version(), r.choice(TAG_KEYS), "passed"),
            lambda: c.delete_model_version_tag(a, self.version(), r.choice(TAG_KEYS)),
            lambda: c.set_registered_model_tag(a, r.choice(TAG_KEYS), "x"),
            lambda: c.update_model_version(a, self.version(), description=f"c{r.randrange(1000)}"),
            lambda: c.copy_model_version(f"models:/{a}/{self.version()}", self.p),
            lambda: c.delete_model_version(a, self.version()),
            lambda: c.rename_registered_model(a, f"{a}-renamed"),
            lambda: c.get_model_version_by_alias(a, "champion"),
        ]
        try:
            r.choice(calls)()
            self.outcomes["client ok"] += 1
        except MlflowException as exc:  # refused (governed, or MLflow's own 4xx): counted, checked after the run
            self.outcomes[f"client {exc.error_code}"] += 1
            if "Checkpoint" not in str(exc) and exc.error_code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE"):
                self.outcomes["client INTERNAL_ERROR from MLflow"] += 1


def test_random_calls_never_change_governed_state_without_an_applied_request(sqlite_checkpoint, mlflow_server, monkeypatch):
    seed = int(os.environ.get("CHECKPOINT_BYPASS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"bypass run seed: {seed} (replay with CHECKPOINT_BYPASS_SEED={seed})")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    gov = sqlite_checkpoint.app.extensions["checkpoint.workflow"].governance
    run = Run(sqlite_checkpoint.url, mlflow_server.url, seed)
    before = registry_state(mlflow_server.url, run.names)
    files_before = files_view(mlflow_server.url, before)
    started = time.monotonic()
    made = 0
    for made in range(1, CALLS + 1):  # noqa: B007 - the count is reported below
        (run.client_call if run.rng.random() < 0.3 else run.raw_call)()
        if time.monotonic() - started > TIME_LIMIT:
            break
    after = registry_state(mlflow_server.url, run.names)
    print(f"{made} calls in {time.monotonic() - started:.1f} s: {dict(sorted(run.outcomes.items()))}")

    store = sqlite_checkpoint.app.extensions["checkpoint.workflow"].store
    assert store.count(state="applied") == 0, "nothing was approved, so nothing may have been applied"
    assert governed_view(after, gov) == governed_view(before, gov), f"seed {seed}: a governed element changed"
    files_after = files_view(mlflow_server.url, after)
    kept = set(files_before) & set(files_after)  # versions deleted (ungoverned) in between no longer count
    assert {k: files_after[k] for k in kept} == {k: files_before[k] for k in kept}, f"seed {seed}: a version's files changed"
    assert any(k.startswith("artifact inside 403") for k in run.outcomes), run.outcomes
    # Guard for the file oracle: a write straight to MLflow (past Checkpoint) shows in it.
    probe = requests.put(f"{mlflow_server.url}/api/2.0/mlflow-artifacts/artifacts/{run.roots[-1]}/probe", data=b"x", timeout=30)
    assert probe.status_code == 200 and files_view(mlflow_server.url, after) != files_after
    # The run must have reached MLflow with both kinds of call, or it proved nothing.
    assert made >= min(CALLS, 100)
    assert run.outcomes["raw 403"] + run.outcomes["client PERMISSION_DENIED"] >= 20, run.outcomes
    assert store.count(state="open") >= 5
    assert after != before, "no ungoverned call got through: the run did not exercise the proxy"


def test_governed_view_sees_each_kind_of_protected_change():
    """Guard for the diff above: each governed element, changed, shows in the view."""
    gov = governance.load(env={})
    base = {"m": {"description": "", "tags": {"validation_status": "passed", "note": "a"},
                  "aliases": {"champion": "1", "candidate": "2"},
                  "versions": {"1": {"stage": "Production", "description": "", "tags": {"validation_status": "passed"},
                                     "source": "s"},
                               "2": {"stage": "None", "description": "", "tags": {}, "source": "s"}}},
            "prod.m": {"description": "", "tags": {}, "aliases": {},
                       "versions": {"1": {"stage": "None", "description": "", "tags": {}, "source": "s"}}}}  # fmt: skip

    def changed(edit) -> bool:
        after = json.loads(json.dumps(base))
        edit(after)
        return governed_view(after, gov) != governed_view(base, gov)

    assert changed(lambda s: s["m"]["versions"]["2"].update(stage="Staging"))
    assert changed(lambda s: s["m"]["aliases"].update(champion="2"))
    assert changed(lambda s: s["m"]["tags"].update(validation_status="failed"))
    assert changed(lambda s: s["m"]["versions"]["1"]["tags"].pop("validation_status"))
    assert changed(lambda s: s["prod.m"]["versions"].update({"2": s["prod.m"]["versions"]["1"]}))
    assert changed(lambda s: s.update(m=None))
    assert not changed(lambda s: s["m"]["aliases"].update(candidate="1"))
    assert not changed(lambda s: s["m"]["tags"].update(note="b"))
    assert not changed(lambda s: s["m"]["versions"]["2"].update(stage="Archived", description="x"))
