"""What a check looks at: one request's challenger and champion as MLflow holds them now."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any

from checkpoint.registry import Registry, RegistryError, Version
from checkpoint.review import changes, diff
from checkpoint.review.checks.results import Unevaluable, brief


class Subject:
    """One request's challenger and champion as MLflow holds them now, read lazily and once
    per evaluation round (the registry adapter caches runs and artifacts on top)."""

    def __init__(
        self,
        request: Any,
        registry: Registry,
        lane_of: Callable[[str, str], Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        self.request = request
        self.registry = registry
        # What a soak check reads: the timeline lane of (model, target), and the time it judges at.
        self.lane_of = lane_of
        self.at = at

    @cached_property
    def change(self) -> changes.Change:
        return changes.from_json(self.request.change)

    @cached_property
    def challenger(self) -> Version | None:
        return self.change.challenger(self.registry)

    @cached_property
    def champion(self) -> Version | None:
        return self.change.champion(self.registry)

    def need_challenger(self) -> Version:
        if self.challenger is None:
            if self.request.challenger:
                gone = f"{self.request.challenger.get('name')} v{self.request.challenger.get('version')}"
                raise Unevaluable(f"the challenger ({gone}) no longer exists in MLflow")
            raise Unevaluable(f"this request ({self.request.kind}) has no model version to check")
        return self.challenger

    def run(self, version: Version) -> dict | None:
        return self.registry.run(version.run_id) if version.run_id else None

    def fresh_run(self, version: Version) -> dict | None:
        """The run read now, not from the adapter's cache: tags are set on finished runs too."""
        if not version.run_id:
            return None
        return self.registry.call("GET", "runs/get", query={"run_id": version.run_id})["run"]

    def metrics(self, version: Version) -> dict[str, float] | None:
        """Latest value per metric key of the version's run; None when it has no run."""
        run = self.run(version)
        if run is None:
            return None
        out: dict[str, float] = {}
        for m in (run.get("data") or {}).get("metrics") or ():
            if "key" in m:
                try:
                    out[m["key"]] = float(m.get("value", "NaN"))
                except (TypeError, ValueError):
                    out[m["key"]] = math.nan
        return out

    def run_tags(self, version: Version) -> dict[str, str] | None:
        run = self.fresh_run(version)
        if run is None:
            return None
        return {t["key"]: t.get("value", "") or "" for t in (run.get("data") or {}).get("tags") or () if "key" in t}

    def signature_info(self, version: Version) -> diff.VersionInfo:
        """The version's MLmodel as the diff reads it; raises Unevaluable when it cannot be read."""
        key = (version.name, version.version)
        cache = self.__dict__.setdefault("_mlmodels", {})
        if key not in cache:
            info = diff.VersionInfo(name=version.name, version=version.version, run_id=version.run_id, source=version.source)
            try:
                info.signature, info.flavors = diff.parse_mlmodel(self.registry.version_artifact_text(version, "MLmodel"))
                info.mlmodel_read = True
            except RegistryError as exc:
                raise Unevaluable(f"the MLmodel of {version.name} v{version.version} could not be read: {brief(exc)}") from exc
            except ValueError as exc:
                raise Unevaluable(f"the MLmodel of {version.name} v{version.version} could not be parsed: {exc}") from exc
            cache[key] = info
        return cache[key]
