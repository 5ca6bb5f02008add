"""The registry adapter: the only code that reads MLflow's registry or writes to it.

Applied changes go out with Checkpoint's own credentials (``CHECKPOINT_REGISTRY_USERNAME``
/ ``_PASSWORD`` or ``_TOKEN``), never the requester's, so a requester needs no write
right on the target. It speaks MLflow's REST API directly (one pooled connection set,
short timeouts) rather than through the MLflow client, which would retry for minutes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import urllib3
from urllib3.exceptions import HTTPError

API = "/api/2.0/mlflow"


class RegistryError(Exception):
    """MLflow answered with an error (``status`` and MLflow's ``error_code``)."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404 or self.error_code == "RESOURCE_DOES_NOT_EXIST"


class RegistryUnavailable(RegistryError):
    """MLflow could not be reached or did not answer in time."""


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

    # -- transport -----------------------------------------------------------------

    def call(self, method: str, endpoint: str, body: Mapping | None = None, query: Mapping | None = None) -> dict:
        url = f"{self.base}{API}/{endpoint}"
        if query:
            url += "?" + urlencode(query)
        try:
            answer = self.http.request(
                method, url, body=json.dumps(body).encode() if body is not None else None, headers=self.headers
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
        return data

    # -- reads ---------------------------------------------------------------------

    def model(self, name: str) -> Model:
        return Model.from_json(self.call("GET", "registered-models/get", query={"name": name})["registered_model"])

    def version(self, name: str, version: str) -> Version:
        data = self.call("GET", "model-versions/get", query={"name": name, "version": version})
        return Version.from_json(data["model_version"])

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

    def create_model(self, name: str) -> None:
        self.call("POST", "registered-models/create", {"name": name})

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


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
