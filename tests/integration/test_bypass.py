"""No call through Checkpoint changes a governed stage, protected alias, protected model,
protected tag, prompt marker or the files of a registered version without an applied promote
request.

A seeded random run (the seed is printed; set CHECKPOINT_BYPASS_SEED to replay one) of 600
mixed calls — governed and ungoverned, through the real MLflow client and as raw HTTP in the
path and body spellings MLflow accepts, with stray workspace headers — against fresh, uniquely
named models. The calls include artifact writes and deletes (under a registered version's
files and elsewhere), create bodies carrying protected tags or the prompt marker, creations of
protected model names, prompt-marker changes and copies from moving ``models:`` references.
MLflow's registry and the registered versions' files are read straight from MLflow (never
through Checkpoint) before and after: the governed part must be identical while nothing was
approved, and every version present before and after must hold the same bytes; the ungoverned
part (other aliases and tags, descriptions, new versions in unprotected models, other
artifacts) is allowed to move, and must have moved, or the run proved nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter
from urllib.parse import quote, urlsplit

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from checkpoint.review import governance
from checkpoint.services import services
from tests.support.governed import make_model, unique
from tests.support.hostile import PROMPT_TAG, governed_view, registry_state, same_governed
from tests.support.proxy import raw_request

CALLS = 600
TIME_LIMIT = 240  # seconds; the run stops early rather than overrun
ALIASES = ["champion", "CHAMPION", "prod-eu", "production", "staging1", "candidate", "challenger", "shadow"]
STAGES = ["Production", "production", "STAGING", "Staging", "None", "none", "Archived", "archived"]
TAG_KEYS = ["validation_status", "VALIDATION_STATUS", "note", "owner"]
PREFIXES = [
    "/api/2.0/mlflow",
    "/ajax-api/2.0/mlflow",
    "//api/2.0/mlflow",
    "/api/2.0//mlflow",
    "/api/2.0/preview/mlflow",
    "/mlflow/api/2.0/mlflow",
]
ARTIFACT_PREFIXES = [
    "/api/2.0/mlflow-artifacts/artifacts",
    "/ajax-api/2.0/mlflow-artifacts/artifacts",
    "//api/2.0/mlflow-artifacts/artifacts",
    "/api/2.0//mlflow-artifacts/artifacts",
    "/api/2.0/mlflow-artifacts//artifacts",
]
WORKSPACES = ["default", "team-b", "", "DEFAULT"]


def _artifact_get(mlflow_url: str, route: str, **params) -> requests.Response:
    answer = requests.get(f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts{route}", params=params, timeout=30)
    assert answer.status_code == 200, f"{route} {params}: {answer.status_code} {answer.text[:300]}"
    return answer


def files_digest(mlflow_url: str, source: str) -> dict[str, str]:
    """Each file under a version's ``mlflow-artifacts:/`` location with the SHA-256 of its bytes,
    read straight from MLflow; an empty dict when nothing is there."""
    root = urlsplit(source).path.strip("/")
    found: dict[str, str] = {}
    pending = [root]
    while pending and len(found) < 200:  # bounded: a version here holds a handful of files
        folder = pending.pop()
        for item in _artifact_get(mlflow_url, "", path=folder).json().get("files", []):
            path = f"{folder}/{item['path']}"
            if item.get("is_dir"):
                pending.append(path)
            else:
                body = _artifact_get(mlflow_url, "/" + quote(path)).content
                found[path[len(root) + 1 :]] = hashlib.sha256(body).hexdigest()
    return found


def content_view(mlflow_url: str, state: dict) -> dict[tuple[str, str], dict[str, str]]:
    """The files of every registered version, by (model, version), from where MLflow says they
    are (``get-download-uri``: a run's folder, or a logged model's for a ``models:/m-…`` source)."""
    found = {}
    for name, model in state.items():
        for version in (model or {}).get("versions", {}):
            answer = requests.get(
                f"{mlflow_url}/api/2.0/mlflow/model-versions/get-download-uri",
                timeout=30,
                params={"name": name, "version": version},
            )
            uri = answer.json().get("artifact_uri", "") if answer.status_code == 200 else ""
            if uri.startswith("mlflow-artifacts:"):
                found[(name, version)] = files_digest(mlflow_url, uri)
    return found


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
        # Files behind each registered version (written straight to MLflow, as a training run would).
        self.runs = {}
        # Written by REST, not by the MLflow client: the client caches a run's artifact store by run
        # id across tracking URIs, so the client calls below would write straight to MLflow.
        for version in versions:
            mv = direct.get_model_version(self.a, version)
            root = mv.source.split(":", 1)[1].strip("/")
            for file, text in (
                ("MLmodel", f"flavors: {{python_function: {{loader_module: m{version}}}}}\n"),
                ("model.pkl", f"weights of v{version}\n"),
            ):
                put = requests.put(f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{root}/{file}", data=text, timeout=30)
                assert put.status_code == 200, put.text[:300]
            self.runs[version] = mv.run_id
        self.experiment = direct.get_run(self.runs[self.v1]).info.experiment_id
        # A run nobody registered: writing its files is ordinary tracking and must pass.
        self.free_run = direct.create_run(self.experiment).info.run_id
        # A prompt (its aliases pass review; its marker must not change unreviewed).
        self.q = f"{self.a}-prompt"
        direct.register_prompt(self.q, "Answer {{question}} briefly.")
        direct.set_prompt_alias(self.q, "champion", 1)
        self.outcomes: Counter[str] = Counter()
        self.recent: list[str] = []  # the last raw calls, shown when one fails
        # Whether the artifact call being sent aims at a registered version's files (as registered
        # at the start: an idle version may be deleted on the way, and then its files are free).
        self.inside = False

    @property
    def names(self) -> list[str]:
        return [
            self.a,
            self.p,
            f"{self.a}-renamed",
            f"prod.{self.a}-renamed",
            self.q,
            f"{self.a}-created",
            f"prod.{self.a}-squat",
        ]

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

    def artifact_path(self, relative: str) -> str:
        """An mlflow-artifacts route to ``relative`` (``<exp>/<run>/artifacts/...``), spelled as
        MLflow would still resolve it."""
        r = self.rng
        if r.random() < 0.15:
            relative = relative.replace("/model/", "/model/./", 1)
        if r.random() < 0.15:
            relative = relative.replace("/model/", "/model/x/../", 1)
        if r.random() < 0.15:
            relative = relative.replace("/", "%2F", relative.count("/"))
        if r.random() < 0.1:
            relative = relative.replace("model", "%6Dodel", 1)
        return f"{r.choice(ARTIFACT_PREFIXES)}/{relative}"

    def headers(self) -> list[tuple[str, str]]:
        headers = [("Authorization", "Basic YnlwYXNzOng=")]  # bypass:x
        if self.rng.random() < 0.1:  # a workspace this server does not have, or the default spelled oddly
            headers.append(("X-MLFLOW-WORKSPACE", self.rng.choice(WORKSPACES)))
        return headers

    def send(self, method: str, endpoint: str, body: dict | None, target: str | None = None, raw: bytes | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else raw
        if body is not None and self.rng.random() < 0.05:
            data = json.dumps(data.decode()).encode()  # a legacy client's double-encoded body
        headers = self.headers()
        if body is not None and (method in ("POST", "PUT") or self.rng.random() < 0.5):
            headers.append(("Content-Type", self.rng.choice(["application/json", "application/json; charset=utf-8"])))
        elif raw is not None:
            headers.append(("Content-Type", "application/octet-stream"))
        target = target or self.path(endpoint)
        answer = raw_request(self.base, method, target, headers, data, timeout=60)
        if "mlflow-artifacts" in target or "upload-artifact" in target:
            self.outcomes[f"artifact {'inside' if self.inside else 'beside'} {answer.status}"] += 1
        # MLflow answers some odd spellings with its own 500; Checkpoint itself must never fail a call.
        shown = f"{method} {target} {headers[1:]}: {answer.status} {answer.body[:300]!r}"
        assert answer.status < 500 or b"Checkpoint" not in answer.body, "\n".join([*self.recent, shown])
        self.recent = [*self.recent[-4:], shown[:400]]
        self.outcomes[f"raw {answer.status}"] += 1

    # -- the calls --

    def raw_call(self) -> None:
        r = self.rng
        name = r.choice([self.a, self.a, self.a, self.p, self.q])
        kind = r.randrange(18)
        if kind == 0:
            self.send("POST", "registered-models/alias", {"name": name, "alias": r.choice(ALIASES), "version": self.version()})
        elif kind == 1:
            self.send("DELETE", "registered-models/alias", {"name": name, "alias": r.choice(ALIASES)})
        elif kind == 2:
            self.send(
                "POST",
                "model-versions/transition-stage",
                {
                    "name": name,
                    "version": self.version(),
                    "stage": r.choice(STAGES),
                    self.key("archive_existing_versions"): r.random() < 0.3,
                },
            )
        elif kind == 3:
            self.send(
                "POST",
                "model-versions/set-tag",
                {
                    "name": name,
                    "version": self.version(),
                    "key": r.choice(TAG_KEYS),
                    "value": r.choice(["passed", "failed", "x"]),
                },
            )
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
            self.send(
                "POST",
                "registered-models/rename",
                {"name": name, self.key("new_name"): r.choice([f"{self.a}-renamed", f"prod.{self.a}-renamed"])},
            )
        elif kind == 12:
            self.artifact_call()
        elif kind == 13:
            tags = r.choice(
                [
                    [{"key": "validation_status", "value": "passed"}],
                    [{"key": "note", "value": "x"}],
                    [{"key": PROMPT_TAG, "value": "true"}],
                ]
            )
            self.send(
                "POST",
                "model-versions/create",
                {"name": r.choice([self.a, self.p, f"{self.a}-created"]), "source": self.source, "tags": tags},
            )
        elif kind == 14:
            body: dict = {"name": r.choice([f"{self.a}-created", f"prod.{self.a}-squat"])}
            if r.random() < 0.7:
                body["tags"] = [
                    r.choice(
                        [
                            {"key": "validation_status", "value": "passed"},
                            {"key": "note", "value": "x"},
                            {"key": PROMPT_TAG, "value": r.choice(["true", "false"])},
                        ]
                    )
                ]
            self.send("POST", "registered-models/create", body)
        elif kind == 15:
            target = r.choice([self.a, self.q, f"{self.a}-created"])
            if r.random() < 0.5:
                self.send(
                    "POST",
                    "registered-models/set-tag",
                    {"name": target, "key": PROMPT_TAG, "value": r.choice(["true", "false", "TRUE", ""])},
                )
            else:
                self.send("DELETE", "registered-models/delete-tag", {"name": target, "key": PROMPT_TAG})
        elif kind == 16:
            source = r.choice(
                [
                    f"models:/{self.a}/latest",
                    f"models:/{self.a}/Production",
                    f"models:/{self.a}/staging",
                    f"models:///{self.a}/{self.v3}",
                    f"models:/{self.a}/{self.v3}?x=1",
                    f"models:/{self.a}@prod-eu",
                    f"models:/{self.q}@champion",
                ]
            )
            self.send("POST", "model-versions/create", {"name": r.choice([self.p, f"prod.{self.a}-squat"]), "source": source})
        else:
            self.send("GET", f"registered-models/alias?name={quote(name)}&alias=champion", None)

    def artifact_call(self) -> None:
        """Write or delete files: under a registered version (governed), or elsewhere (passes)."""
        r = self.rng
        run = self.runs[r.choice([self.v1, self.v2, self.v3])]
        governed = [
            f"{self.experiment}/{run}/artifacts/model/model.pkl",
            f"{self.experiment}/{run}/artifacts/model/MLmodel",
            f"{self.experiment}/{run}/artifacts/model/extra.bin",
            f"{self.experiment}/{run}/artifacts/model",
            f"{self.experiment}/{run}/artifacts",
        ]
        free = [
            f"{self.experiment}/{self.free_run}/artifacts/model/model.pkl",
            f"{self.experiment}/{run}/artifacts/plots/p{r.randrange(100)}.txt",
        ]
        inside = r.random() < 0.75
        relative = r.choice(governed if inside else free)
        self.inside = inside
        if r.random() < 0.1:  # a multipart upload (refused or not enabled; either way nothing lands)
            self.send("POST", "", None, target=self.artifact_path(relative).replace("/artifacts/", "/mpu/create/", 1), raw=b"{}")
        elif r.random() < 0.15:  # MLflow's older upload route, from the web UI
            path = relative.split("/artifacts/", 1)[1] if "/artifacts/" in relative else "model.pkl"
            self.inside = path.startswith("model")  # the run's own root is beside the model's folder
            run_id = relative.split("/")[1]
            target = f"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run_id}&path={quote(path, safe='')}"
            self.send("POST", "", None, target=target, raw=b"swapped weights\n")
        elif r.random() < 0.7:
            self.send("PUT", "", None, target=self.artifact_path(relative), raw=b"swapped weights\n")
        else:
            self.send("DELETE", "", None, target=self.artifact_path(relative))

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
            lambda: c.delete_registered_model_tag(self.q, PROMPT_TAG),
            lambda: c.create_model_version(a, self.source, tags={"validation_status": "passed"}),
            lambda: c.copy_model_version(f"models:/{a}/latest", self.p),
            lambda: c.log_text(self.runs[self.v1], "swapped\n", "model/model.pkl"),
            lambda: c.log_text(self.free_run, f"n{r.randrange(100)}\n", "notes/n.txt"),
        ]
        try:
            r.choice(calls)()
            self.outcomes["client ok"] += 1
        except MlflowException as exc:  # refused (governed, or MLflow's own 4xx): counted, checked after the run
            self.outcomes[f"client {exc.error_code}"] += 1
            if "Checkpoint" not in str(exc) and exc.error_code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE"):
                self.outcomes["client INTERNAL_ERROR from MLflow"] += 1
        except requests.HTTPError as exc:  # the client's artifact uploads raise requests' own error
            status = exc.response.status_code if exc.response is not None else 0
            self.outcomes[f"client artifact {status}"] += 1
            if status >= 500 and "Checkpoint" in (exc.response.text if exc.response is not None else ""):
                self.outcomes["client 5xx from Checkpoint"] += 1  # must stay 0: checked after the run


def test_random_calls_never_change_governed_state_without_an_applied_request(sqlite_checkpoint, mlflow_server, monkeypatch):
    seed = int(os.environ.get("CHECKPOINT_BYPASS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"bypass run seed: {seed} (replay with CHECKPOINT_BYPASS_SEED={seed})")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    gov = services(sqlite_checkpoint.app).workflow.governance
    run = Run(sqlite_checkpoint.url, mlflow_server.url, seed)
    before = registry_state(mlflow_server.url, run.names)
    files_before = content_view(mlflow_server.url, before)
    assert files_before[(run.a, run.v1)] == files_digest(mlflow_server.url, run.source) != {}, "the oracle reads no files"
    started = time.monotonic()
    made = 0
    for made in range(1, CALLS + 1):  # noqa: B007 - the count is reported below
        (run.client_call if run.rng.random() < 0.3 else run.raw_call)()
        if time.monotonic() - started > TIME_LIMIT:
            break
    after = registry_state(mlflow_server.url, run.names)
    print(f"{made} calls in {time.monotonic() - started:.1f} s: {dict(sorted(run.outcomes.items()))}")

    store = services(sqlite_checkpoint.app).store
    assert store.count(state="applied") == 0, "nothing was approved, so nothing may have been applied"
    changed_names = same_governed(before, after, gov)
    assert not changed_names, f"seed {seed}: a governed element changed: " + "; ".join(
        f"{n}: {governed_view(before, gov)[n]} -> {governed_view(after, gov)[n]}" for n in changed_names
    )
    files_after = content_view(mlflow_server.url, after)
    changed = sorted(key for key in files_before.keys() & files_after.keys() if files_before[key] != files_after[key])
    assert not changed, f"seed {seed}: the files of registered versions changed: {changed}"
    assert run.outcomes["client 5xx from Checkpoint"] == 0, run.outcomes
    assert any(k.startswith("artifact inside 403") for k in run.outcomes), run.outcomes
    # Ordinary logging still passes: a file for a run nobody registered, through Checkpoint.
    logged = raw_request(
        sqlite_checkpoint.url,
        "PUT",
        f"/api/2.0/mlflow-artifacts/artifacts/{run.experiment}/{run.free_run}/artifacts/notes/end.txt",
        [("Content-Type", "text/plain")],
        b"done\n",
    )
    assert logged.status == 200, logged.body[:300]
    # Guard for the file oracle: a write straight to MLflow (past Checkpoint) shows in it.
    probe = f"{run.source.split(':', 1)[1].strip('/')}/probe.bin"
    put = requests.put(f"{mlflow_server.url}/api/2.0/mlflow-artifacts/artifacts/{probe}", data=b"x", timeout=30)
    assert put.status_code == 200 and content_view(mlflow_server.url, after) != files_after
    # The run must have reached MLflow with both kinds of call, or it proved nothing.
    assert made >= min(CALLS, 100)
    assert run.outcomes["raw 403"] + run.outcomes["client PERMISSION_DENIED"] >= 20, run.outcomes
    assert store.count(state="open") >= 5
    assert after != before, "no ungoverned call got through: the run did not exercise the proxy"


def test_governed_view_sees_each_kind_of_protected_change():
    """Guard for the diff above: each governed element, changed, shows in the view."""
    gov = governance.load(env={})
    base = {
        "m": {
            "description": "",
            "tags": {"validation_status": "passed", "note": "a"},
            "aliases": {"champion": "1", "candidate": "2"},
            "versions": {
                "1": {"stage": "Production", "description": "", "tags": {"validation_status": "passed"}, "source": "s"},
                "2": {"stage": "None", "description": "", "tags": {}, "source": "s"},
            },
        },
        "prod.m": {
            "description": "",
            "tags": {},
            "aliases": {},
            "versions": {"1": {"stage": "None", "description": "", "tags": {}, "source": "s"}},
        },
        "prod.new": None,
        "ordinary-new": None,
    }

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
    assert changed(lambda s: s["m"]["tags"].update({PROMPT_TAG: "true"}))
    assert (
        same_governed(
            base, {**base, "ordinary-new": {"tags": {PROMPT_TAG: "true"}, "aliases": {"champion": "1"}, "versions": {}}}, gov
        )
        == []
    )  # a new prompt
    assert same_governed(base, {**base, "ordinary-new": {"tags": {}, "aliases": {"champion": "1"}, "versions": {}}}, gov) == [
        "ordinary-new"
    ]
    prompt = {"tags": {PROMPT_TAG: "true"}, "aliases": {"champion": "1"}, "versions": {}}
    assert same_governed({**base, "p": prompt}, {**base, "p": None}, gov) == []  # a prompt deleted
    assert same_governed({**base, "p": prompt}, {**base, "p": {**prompt, "tags": {}}}, gov) == ["p"]  # unmarked
    # A prompt's own protected-key tags are its business (the gate exempts them), so a prompt
    # carrying one may be renamed to a free name; the same tag on a model arriving there may not.
    tagged_prompt = {**prompt, "aliases": {}, "tags": {PROMPT_TAG: "true", "validation_status": "failed"}}
    assert same_governed({**base, "p": tagged_prompt, "p2": None}, {**base, "p": None, "p2": tagged_prompt}, gov) == []
    tagged_model = {"tags": {"validation_status": "failed"}, "aliases": {}, "versions": {}}
    assert same_governed({**base, "p2": None}, {**base, "p2": tagged_model}, gov) == ["p2"]
    model_in_prompt = {"stage": "None", "description": "", "tags": {"validation_status": "passed"}, "source": "s"}
    assert same_governed(
        {**base, "p": {**prompt, "versions": {"1": model_in_prompt}}},
        {**base, "p": {**prompt, "versions": {"1": {**model_in_prompt, "tags": {}}}}},
        gov,
    ) == ["p"]  # a real model version inside a prompt keeps its governed tags
    assert not changed(lambda s: s.update({"prod.new": {"tags": {}, "aliases": {}, "versions": {}}}))
    assert changed(
        lambda s: s.update(
            {
                "prod.new": {
                    "tags": {},
                    "aliases": {},
                    "versions": {"1": {"stage": "None", "description": "", "tags": {}, "source": "s"}},
                }
            }
        )
    )
    assert not changed(lambda s: s.update({"ordinary-new": {"tags": {"note": "x"}, "aliases": {}, "versions": {}}}))
    assert not changed(lambda s: s["m"]["aliases"].update(candidate="1"))
    assert not changed(lambda s: s["m"]["tags"].update(note="b"))
    assert not changed(lambda s: s["m"]["versions"]["2"].update(stage="Archived", description="x"))
