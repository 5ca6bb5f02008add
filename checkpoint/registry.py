"""The registry adapter: the only code that reads MLflow's registry or writes to it.

Applied changes go out with Checkpoint's own credentials (``CHECKPOINT_REGISTRY_USERNAME``
/ ``_PASSWORD`` or ``_TOKEN``), never the requester's, so a requester needs no write
right on the target. It speaks MLflow's REST API directly (one pooled connection set,
short timeouts) rather than through the MLflow client, which would retry for minutes.

Longer than the ~400 lines a module should be, on purpose: it is the one adapter to MLflow
(STYLE.md), so every MLflow REST route Checkpoint itself calls, and every answer it reads, is here
and nowhere else. Most of it is one short method per route. The value types at the top
(``Version``, ``Model``, the two errors, the small cache) are what those methods return and
keep; moving them to a second file would still leave ~450 lines here (the class alone is
~400) and send a reader of a method elsewhere for its return type.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from urllib3.exceptions import HTTPError

from checkpoint.errors import CheckpointError
from checkpoint.runtime.logs import current_request_id

API = "/api/2.0/mlflow"
# A query string: a mapping, or pairs where a key repeats (urlencode takes both).
Query = Mapping[str, object] | Sequence[tuple[str, object]]
CACHE_SECONDS = 60.0
# MLflow >= 3.10 with ``--enable-workspaces`` picks the workspace of every call from this header
# (absent or blank: the default workspace); Checkpoint sends it for every read and write of a
# change made in another workspace.
WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"
# How long one caller's "may read this model" stays believed: a revoked grant is honoured
# within this many seconds. Short, and bounded in entries, because it is per caller.
READ_RIGHT_SECONDS = 10.0
READ_RIGHT_ENTRIES = 4096


class _TTLCache:
    """A small, thread-safe, time-bounded cache for upstream reads that do not change."""

    def __init__(self, seconds: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.size, self.clock = seconds, size, clock
        self._items: dict = {}
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            hit = self._items.get(key)
            if hit is None or hit[0] < self.clock():
                self._items.pop(key, None)
                return None
            return hit[1]

    def put(self, key, value) -> None:
        with self._lock:
            if len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))  # oldest insertion first
            self._items[key] = (self.clock() + self.seconds, value)


class RegistryError(CheckpointError):
    """MLflow answered with an error (``status`` and ``error_code`` are MLflow's own).

    Checkpoint's API answers it as :meth:`answer` says; the gateway, answering MLflow's own
    clients, decides per call (never a 5xx they would retry for minutes: ``gateway.py``).
    """

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(status, error_code, message)
        self.args = (f"{error_code}: {message}",)

    def answer(self) -> CheckpointError:
        """A refusal MLflow gave is not a fault of Checkpoint's: 422, MLflow's words quoted."""
        return CheckpointError(422, self.error_code, f"MLflow: {self.message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404 or self.error_code == "RESOURCE_DOES_NOT_EXIST"


class RegistryUnavailable(RegistryError):
    """MLflow could not be reached or did not answer in time."""

    def answer(self) -> CheckpointError:
        return CheckpointError(502, self.error_code, f"Checkpoint: {self.message}")


class MalformedAnswer(RegistryUnavailable, KeyError):
    """MLflow answered 200 without a field its API always carries: whatever answered is not the
    MLflow Checkpoint expects, which is the registry's fault (a 502), never a crash (a 500). Still a
    KeyError to code that reads an answer expecting a field may be missing."""

    def __str__(self) -> str:
        return Exception.__str__(self)  # not KeyError's, which quotes the message


class _Answer(dict):
    """An answer's top-level object, which knows the call it answers (for :class:`MalformedAnswer`)."""

    endpoint = ""

    def __missing__(self, key):
        raise MalformedAnswer(502, "BAD_RESPONSE", f"MLflow's answer to {self.endpoint} has no {key!r}")


@dataclass(frozen=True)
class Version:
    """A registered model version, as much of it as promotions care about."""

    name: str
    version: str
    stage: str
    aliases: tuple[str, ...]
    run_id: str
    source: str
    tags: Mapping[str, str]
    creation_timestamp: int
    user_id: str = ""

    @classmethod
    def from_json(cls, data: Mapping) -> Version:
        return cls(
            name=data.get("name", ""),
            version=str(data.get("version", "")),
            stage=data.get("current_stage", "None") or "None",
            aliases=tuple(data.get("aliases", ()) or ()),
            run_id=data.get("run_id", "") or "",
            source=data.get("source", "") or "",
            tags={t["key"]: t.get("value", "") for t in data.get("tags", ()) or ()},
            creation_timestamp=int(data.get("creation_timestamp", 0) or 0),
            user_id=data.get("user_id", "") or "",
        )

    def identity(self) -> dict:
        """What a reviewer approved: enough to tell later whether it moved."""
        return {"name": self.name, "version": self.version, "run_id": self.run_id, "source": self.source}


@dataclass(frozen=True)
class Model:
    name: str
    tags: Mapping[str, str]
    aliases: Mapping[str, str]  # alias -> version
    latest: tuple[Version, ...]

    @property
    def is_prompt(self) -> bool:
        return self.tags.get("mlflow.prompt.is_prompt", "").lower() == "true"

    @classmethod
    def from_json(cls, data: Mapping) -> Model:
        return cls(
            name=data.get("name", ""),
            tags={t["key"]: t.get("value", "") for t in data.get("tags", ()) or ()},
            aliases={a["alias"]: str(a["version"]) for a in data.get("aliases", ()) or ()},
            latest=tuple(Version.from_json(v) for v in data.get("latest_versions", ()) or ()),
        )


class Registry:
    """Reads and writes against one MLflow server's REST API."""

    def __init__(
        self,
        registry_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(registry_url)
        self.base = registry_url.rstrip("/")
        self.http = urllib3.PoolManager(
            num_pools=2, maxsize=16, retries=False, timeout=urllib3.Timeout(connect=5.0, read=timeout)
        )
        self.headers = {"Content-Type": "application/json", "User-Agent": "checkpoint"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif username:
            pair = f"{username}:{password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self.netloc = parts.netloc
        self._cache = _TTLCache(CACHE_SECONDS, 256)
        self._read_rights = _TTLCache(READ_RIGHT_SECONDS, READ_RIGHT_ENTRIES)
        self.workspace = ""  # "" is MLflow's default workspace: no header is sent

    def in_workspace(self, workspace: str) -> Registry:
        """This adapter acting in MLflow workspace ``workspace`` ("" = the default): the same
        connection pool and caches (whose keys carry the workspace), and the workspace header
        on every call. Every read and write for a change goes through the change's view."""
        workspace = workspace or ""
        if workspace == self.workspace:
            return self
        view = copy.copy(self)
        view.workspace = workspace
        return view

    # -- transport -----------------------------------------------------------------

    def call(self, method: str, endpoint: str, body: Mapping | None = None, query: Query | None = None) -> dict:
        return self._call_path(method, f"{API}/{endpoint}", query, body)

    def _call_path(self, method: str, path: str, query: Query | None = None, body: Mapping | None = None) -> dict:
        endpoint = path
        url = f"{self.base}{path}"
        if query:
            url += "?" + urlencode(query)
        try:
            answer = self.http.request(
                method, url, body=json.dumps(body).encode() if body is not None else None, headers=self._headers()
            )
        except (HTTPError, OSError) as exc:
            raise RegistryUnavailable(
                502, "TEMPORARILY_UNAVAILABLE", f"the MLflow server at {self.base} is unreachable: {exc}"
            ) from exc
        text = answer.data.decode("utf-8", "replace")
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = None
        if answer.status != 200:
            if isinstance(data, dict) and "error_code" in data:
                raise RegistryError(answer.status, data["error_code"], data.get("message", ""))
            raise RegistryError(answer.status, f"HTTP_{answer.status}", text[:500])
        if not isinstance(data, dict):
            raise RegistryError(answer.status, "BAD_RESPONSE", f"MLflow answered {endpoint} with non-JSON: {text[:200]}")
        found = _Answer(data)
        found.endpoint = endpoint
        return found

    def _headers(self) -> dict[str, str]:
        """Checkpoint's headers, the workspace's, and the id of the call being served (logs.py), if any."""
        headers = {**self.headers, WORKSPACE_HEADER: self.workspace} if self.workspace else self.headers
        rid = current_request_id()
        return {**headers, "X-Request-Id": rid} if rid else headers

    # -- reads ---------------------------------------------------------------------

    def model(self, name: str) -> Model:
        return Model.from_json(self.call("GET", "registered-models/get", query={"name": name})["registered_model"])

    def version(self, name: str, version: str) -> Version:
        return Version.from_json(self.version_json(name, version))

    def version_json(self, name: str, version: str) -> dict:
        """MLflow's own JSON for a version, as read now (never cached)."""
        return dict(self.call("GET", "model-versions/get", query={"name": name, "version": version})["model_version"])

    def alias_holder(self, name: str, alias: str) -> Version | None:
        try:
            data = self.call("GET", "registered-models/alias", query={"name": name, "alias": alias})
        except RegistryError as exc:
            if exc.not_found or exc.error_code == "INVALID_PARAMETER_VALUE":
                return None
            raise
        return Version.from_json(data["model_version"])

    def stage_holders(self, name: str, stage: str) -> list[Version]:
        """Every version of ``name`` in ``stage`` (get-latest-versions returns only the newest)."""
        versions = self.search_versions(f"name = '{_quote(name)}'")
        return [v for v in versions if v.stage == stage]

    def search_versions(self, filter_string: str, max_pages: int = 50) -> list[Version]:
        out: list[Version] = []
        token = None
        for _ in range(max_pages):
            query = {"filter": filter_string, "max_results": 1000}
            if token:
                query["page_token"] = token
            data = self.call("GET", "model-versions/search", query=query)
            out.extend(Version.from_json(v) for v in data.get("model_versions", ()))
            token = data.get("next_page_token")
            if not token:
                break
        return out

    def latest_version(self, name: str) -> Version | None:
        """The highest version number of ``name`` (what ``models:/name/latest`` resolves to)."""
        try:
            versions = self.search_versions(f"name = '{_quote(name)}'")
        except RegistryError as exc:
            if exc.not_found:
                return None
            raise
        return max(versions, key=lambda v: int(v.version), default=None)

    def download_uri(self, name: str, version: str) -> str:
        """Where a version's files are stored (MLflow's ``storage_location``: a copy's is its
        source version's, a logged model's its ``artifact_location``). Never cached: a version
        registered a second ago counts."""
        data = self.call("GET", "model-versions/get-download-uri", query={"name": name, "version": version})
        return str(data.get("artifact_uri", "") or "")

    def logged_model(self, model_id: str) -> dict:
        """A logged model's ``info`` (``artifact_uri``, ``source_run_id``, ...)."""
        return self.call("GET", f"logged-models/{quote(model_id, safe='')}")["model"]["info"]

    def list_artifacts(self, path: str) -> list[tuple[str, bool, int]]:
        """(name, is_dir, size) of the entries of one directory of the served artifact store."""
        data = self._call_path("GET", f"{API}-artifacts/artifacts", {"path": path})
        return [(f.get("path", ""), bool(f.get("is_dir")), int(f.get("file_size", 0) or 0)) for f in data.get("files", ())]

    def read_artifact(self, path: str, limit: int, chunk: int = 1 << 16) -> Iterator[bytes]:
        """The bytes of one served artifact file, streamed, at most ``limit`` of them."""
        url = f"{self.base}{API}-artifacts/artifacts/{quote(path, safe='/')}"
        headers = {k: v for k, v in self._headers().items() if k != "Content-Type"}
        try:
            answer = self.http.request("GET", url, headers=headers, preload_content=False)
        except (HTTPError, OSError) as exc:
            raise RegistryUnavailable(
                502, "TEMPORARILY_UNAVAILABLE", f"the MLflow server at {self.base} is unreachable: {exc}"
            ) from exc
        done = False
        try:
            if answer.status != 200:
                text = answer.read(2000).decode("utf-8", "replace")
                raise RegistryError(answer.status, f"HTTP_{answer.status}", text[:500])
            left = limit
            while left > 0:
                data = answer.read(min(chunk, left))
                if not data:
                    break
                left -= len(data)
                yield data
            done = not answer.read(1)
        except (HTTPError, OSError) as exc:
            raise RegistryUnavailable(502, "TEMPORARILY_UNAVAILABLE", f"reading {path} failed: {exc}") from exc
        finally:
            if not done:  # an unread rest must not reach the next call on this connection
                answer.close()
            answer.release_conn()

    def can_manage(self, username: str, model: str) -> bool:
        """Whether MLflow's basic-auth app grants ``username`` MANAGE on ``model`` (asked with
        Checkpoint's own admin account): the default right to review its promotions."""
        try:
            data = self.call_v3(
                "GET",
                "users/permissions/get",
                query={"username": username, "resource_type": "registered_model", "resource_id": model},
            )
        except RegistryError as exc:
            if exc.error_code == "HTTP_404":  # no such route: MLflow 2.x, which only has the per-model grant
                return self._can_manage_v2(username, model)
            if exc.status in (400, 404):
                return False
            raise
        return str(data.get("permission", "")).upper() == "MANAGE"

    def is_admin(self, username: str) -> bool:
        """Whether MLflow's basic-auth app knows ``username`` as an admin (who may review anything);
        False for an unknown user."""
        try:
            data = self.call("GET", "users/get", query={"username": username})
        except RegistryError as exc:
            if exc.status in (400, 404):
                return False
            raise
        return bool((data.get("user") or {}).get("is_admin"))

    def user_record(self, username: str) -> dict | None:
        """MLflow's record of ``username`` (``{"username", "is_admin", ...}``), asked with Checkpoint's
        own admin account; None for a user MLflow does not know (deleted since)."""
        try:
            data = self.call("GET", "users/get", query={"username": username})
        except RegistryError as exc:
            if exc.status in (400, 404):
                return None
            raise
        return data.get("user") or None

    def user_can_read(self, username: str, model: str) -> bool:
        """Whether MLflow lets ``username`` read ``model`` (in this adapter's workspace), asked with
        Checkpoint's own admin account (``users/permissions/get``: the effective permission, the
        default one included): how a token, which holds no MLflow password, reads as its owner.
        Anything but a clear answer reads as "no" and is not cached, like :meth:`can_read`."""
        key = ("user:" + hashlib.sha256(username.encode()).hexdigest(), self.workspace or "", model)
        cached = self._read_rights.get(key)
        if cached is not None:
            return cached
        try:
            data = self.call_v3(
                "GET",
                "users/permissions/get",
                query={"username": username, "resource_type": "registered_model", "resource_id": model},
            )
        except RegistryError:
            return False
        allowed = str(data.get("permission", "")).upper() in ("READ", "USE", "EDIT", "MANAGE")
        self._read_rights.put(key, allowed)
        return allowed

    def may_user_read(self, username: str, model: str) -> bool:
        """Whether ``username`` may read ``model``: an MLflow admin reads everything, anyone
        else as :meth:`user_can_read` says (asked with Checkpoint's account; no answer: no)."""
        if self.user_can_read(username, model):
            return True
        try:
            return self.is_admin(username)
        except RegistryError:
            return False

    def _can_manage_v2(self, username: str, model: str) -> bool:
        """MLflow 2.x: the grant ``username`` holds on ``model`` (the creator gets MANAGE); no grant
        means the server's default permission, which is never MANAGE in a governed set-up."""
        try:
            data = self.call("GET", "registered-models/permissions/get", query={"name": model, "username": username})
        except RegistryError as exc:
            if exc.status in (400, 404):
                return False
            raise
        return str((data.get("registered_model_permission") or {}).get("permission", "")).upper() == "MANAGE"

    def can_read(self, authorization: str, model: str, workspace: str = "") -> bool:
        """Whether MLflow lets the caller whose ``Authorization`` header this is read ``model``.

        Asked with the caller's own credentials (``registered-models/get``), so MLflow's own rules
        decide, DENY and default permission included. A model that does not exist is readable:
        MLflow answers the caller 404, not 403, so nothing is hidden by showing it. Anything but a
        clear answer (MLflow down, a 5xx) reads as "no" and is not cached: visibility fails closed.
        Answers are kept per (hash of the header, workspace, model), never the header itself.
        """
        key = (hashlib.sha256(authorization.encode()).hexdigest(), workspace, model)
        cached = self._read_rights.get(key)
        if cached is not None:
            return cached
        headers = {"Authorization": authorization, "User-Agent": "checkpoint"}
        rid = current_request_id()
        if rid:
            headers["X-Request-Id"] = rid
        if workspace:  # a server without workspaces answers 500 FEATURE_DISABLED to the header
            headers["X-MLFLOW-WORKSPACE"] = workspace
        url = f"{self.base}{API}/registered-models/get?" + urlencode({"name": model})
        try:
            answer = self.http.request("GET", url, headers=headers)
        except (HTTPError, OSError):
            return False
        if answer.status in (200, 404):
            allowed = True
        elif answer.status in (401, 403):
            allowed = False
        else:
            return False
        self._read_rights.put(key, allowed)
        return allowed

    def call_v3(self, method: str, endpoint: str, query: Query | None = None) -> dict:
        """The few routes MLflow serves only under ``/api/3.0``."""
        return self._call_path(method, f"/api/3.0/mlflow/{endpoint}", query)

    # -- writes --------------------------------------------------------------------

    def transition_stage(self, name: str, version: str, stage: str, archive_existing: bool) -> Version:
        body = {"name": name, "version": version, "stage": stage, "archive_existing_versions": archive_existing}
        return Version.from_json(self.call("POST", "model-versions/transition-stage", body)["model_version"])

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.call("POST", "registered-models/alias", {"name": name, "alias": alias, "version": version})

    def delete_alias(self, name: str, alias: str) -> None:
        self.call("DELETE", "registered-models/alias", {"name": name, "alias": alias})

    def create_version(self, body: Mapping) -> Version:
        return Version.from_json(self.call("POST", "model-versions/create", body)["model_version"])

    def create_model(self, name: str, body: Mapping | None = None) -> dict:
        """A registered model; ``body`` adds the create call's other fields (tags, description).
        MLflow's answer (``{"registered_model": ...}``) is returned as it came."""
        return self.call("POST", "registered-models/create", {**(body or {}), "name": name})

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.call("POST", "model-versions/set-tag", {"name": name, "version": version, "key": key, "value": value})

    def delete_version_tag(self, name: str, version: str, key: str) -> None:
        self.call("DELETE", "model-versions/delete-tag", {"name": name, "version": version, "key": key})

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self.call("POST", "registered-models/set-tag", {"name": name, "key": key, "value": value})

    def delete_model_tag(self, name: str, key: str) -> None:
        self.call("DELETE", "registered-models/delete-tag", {"name": name, "key": key})

    def delete_version(self, name: str, version: str) -> None:
        self.call("DELETE", "model-versions/delete", {"name": name, "version": version})

    def delete_model(self, name: str) -> None:
        self.call("DELETE", "registered-models/delete", {"name": name})

    def rename_model(self, name: str, new_name: str) -> None:
        self.call("POST", "registered-models/rename", {"name": name, "new_name": new_name})

    # -- reads for the diff ----------------------------------------------------------

    def run(self, run_id: str, fresh: bool = False) -> dict:
        """The run as MLflow sends it: ``info``, ``data`` (params, latest metrics, tags), ``inputs``.

        A finished run is kept for ``CACHE_SECONDS``: a run with thousands of params costs MLflow
        hundreds of milliseconds, and every reviewer opening the request would pay it again.
        ``fresh``: read MLflow now (a diff snapshot says when it was read; a cached run would
        make that time a lie), and keep what was read.
        """
        key = ("run", self.workspace, run_id)
        cached = None if fresh else self._cache.get(key)
        if cached is not None:
            return cached
        run = self.call("GET", "runs/get", query={"run_id": run_id})["run"]
        if (run.get("info") or {}).get("status") in ("FINISHED", "FAILED", "KILLED"):
            self._cache.put(key, run)
        return run

    def metric_histories(self, run_ids: Sequence[str], key: str, max_points: int = 200) -> dict[str, list[tuple[int, float]]]:
        """``key``'s history per run, sampled to at most ``max_points`` steps (both sides of a diff
        in one call); a server without the bulk endpoint gets one full get-history call per run."""
        run_ids = list(dict.fromkeys(r for r in run_ids if r))
        out: dict[str, list[tuple[int, float]]] = {r: [] for r in run_ids}
        if not run_ids:
            return out
        try:
            # Pairs, not a dict: urlencode must repeat run_ids once per run.
            query = [("run_ids", r) for r in run_ids] + [("metric_key", key), ("max_results", max_points)]
            metrics = self.call("GET", "metrics/get-history-bulk-interval", query=query).get("metrics", ())
        except RegistryError as exc:
            if exc.status != 404:
                raise
            metrics = []
            for run_id in run_ids:
                data = self.call("GET", "metrics/get-history", query={"run_id": run_id, "metric_key": key})
                metrics += [{**m, "run_id": run_id} for m in data.get("metrics", ())]
        for m in metrics:
            out.setdefault(m.get("run_id", ""), []).append((int(m.get("step", 0) or 0), float(m.get("value", "NaN"))))
        for points in out.values():
            points.sort(key=lambda p: p[0])
        return out

    def version_artifact_text(self, version: Version, path: str, max_bytes: int = 1 << 20, fresh: bool = False) -> str:
        """One file of a version's model directory (``MLmodel``, ``requirements.txt``) as text.

        ``/model-versions/get-artifact`` resolves every source kind on MLflow 3 but answers 500 for
        ``runs:/`` sources stored under ``mlflow-artifacts:``, so the source's own route is the
        fallback. Raises RegistryError (``not_found`` when no route had the file). ``fresh``: as
        :meth:`run`.
        """
        key = ("artifact", self.workspace, version.name, version.version, version.source, path)
        cached = None if fresh else self._cache.get(key)
        if cached is not None:
            return cached
        errors: list[RegistryError] = []
        for route, query in self._artifact_routes(version, path, errors):
            try:
                text = self._get_text(route, query, max_bytes)
                self._cache.put(key, text)  # a version's model files never change
                return text
            except RegistryUnavailable:
                raise
            except RegistryError as exc:
                errors.append(exc)
        missing = [e for e in errors if e.not_found]
        if missing or not errors:
            raise missing[0] if missing else RegistryError(404, "RESOURCE_DOES_NOT_EXIST", f"no route to {path}")
        raise errors[0]

    def _artifact_routes(self, version: Version, path: str, errors: list[RegistryError]) -> Iterator[tuple[str, dict | None]]:
        """Routes that may serve ``path`` for ``version``, most general first; lazy, so the
        logged-model lookup only happens when the general route failed."""
        yield "/model-versions/get-artifact", {"name": version.name, "version": version.version, "path": path}
        source = version.source
        if source.startswith("runs:/"):
            run_id, _, sub = source[len("runs:/") :].partition("/")
            yield "/get-artifact", {"run_id": run_id, "path": f"{sub.strip('/')}/{path}" if sub.strip("/") else path}
            return
        if source.startswith("models:/m-"):
            model_id = source[len("models:/") :].strip("/")
            try:
                source = self.call("GET", f"logged-models/{quote(model_id, safe='')}")["model"]["info"]["artifact_uri"]
            except RegistryUnavailable:
                raise
            except (RegistryError, KeyError, TypeError) as exc:
                errors.append(exc if isinstance(exc, RegistryError) else RegistryError(500, "BAD_RESPONSE", str(exc)))
                return
        if source.startswith("mlflow-artifacts:"):
            stored = urlsplit(source).path.strip("/")
            yield f"{API}-artifacts/artifacts/{quote(stored, safe='/')}/{quote(path, safe='/')}", None

    def _get_text(self, route: str, query: Mapping | None, max_bytes: int) -> str:
        """GET a file route on the server root (not under the REST prefix), at most ``max_bytes``."""
        url = self.base + route + ("?" + urlencode(query) if query else "")
        headers = {k: v for k, v in self._headers().items() if k != "Content-Type"}
        try:
            answer = self.http.request("GET", url, headers=headers, preload_content=False)
            try:
                raw = answer.read(max_bytes + 1)
            finally:
                answer.release_conn()
        except (HTTPError, OSError) as exc:
            raise RegistryUnavailable(
                502, "TEMPORARILY_UNAVAILABLE", f"the MLflow server at {self.base} is unreachable: {exc}"
            ) from exc
        text = raw.decode("utf-8", "replace")
        if answer.status != 200:
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if isinstance(data, dict) and "error_code" in data:
                raise RegistryError(answer.status, data["error_code"], data.get("message", ""))
            raise RegistryError(answer.status, f"HTTP_{answer.status}", text[:500])
        if len(raw) > max_bytes:
            raise RegistryError(413, "ARTIFACT_TOO_LARGE", f"{route} is larger than {max_bytes} bytes")
        return text


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
