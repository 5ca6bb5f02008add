"""Helpers for the hostile-input, fault and bypass tests: whole-database dumps on SQLite and
PostgreSQL, MLflow's registry state read straight from MLflow, the part of it only an applied
request may change (``governed_view``), and a CSRF-carrying browser session for Checkpoint's forms."""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests
import sqlalchemy as sa

from checkpoint.review import governance

API = "/api/2.0/mlflow"


def database_dump(engine: sa.Engine) -> dict[str, object]:
    """Every row of every table ordered by primary key (found by inspection, so tables added by
    later migrations are covered too), plus SQLite's own ``iterdump()`` of the whole file."""
    inspector = sa.inspect(engine)
    rows: dict[str, list[tuple]] = {}
    with engine.connect() as conn:
        for table_name in sorted(inspector.get_table_names()):
            table = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
            order = list(table.primary_key.columns) or list(table.columns)
            rows[table_name] = [tuple(row) for row in conn.execute(sa.select(table).order_by(*order))]
        dump: dict[str, object] = {"rows": rows}
        if engine.dialect.name == "sqlite":
            dump["iterdump"] = list(conn.connection.driver_connection.iterdump())
    return dump


def _get(mlflow_url: str, endpoint: str, **params) -> dict:
    answer = requests.get(f"{mlflow_url}{API}/{endpoint}", params=params, timeout=30)
    assert answer.status_code == 200, f"{endpoint}: {answer.status_code} {answer.text[:300]}"
    return answer.json()


def registry_state(mlflow_url: str, names: list[str] | tuple[str, ...]) -> dict:
    """What MLflow itself holds for these models (read from MLflow, never through Checkpoint):
    each model's description, tags and aliases, each version's stage, tags and description.
    A model that does not exist is recorded as None."""
    state: dict[str, dict | None] = {}
    for name in names:
        answer = requests.get(f"{mlflow_url}{API}/registered-models/get", params={"name": name}, timeout=30)
        if answer.status_code == 404:
            state[name] = None
            continue
        assert answer.status_code == 200, answer.text[:300]
        model = answer.json()["registered_model"]
        versions = _get(mlflow_url, "model-versions/search", filter=f"name = '{name}'", max_results=1000)
        state[name] = {
            "description": model.get("description", ""),
            "tags": {t["key"]: t.get("value", "") for t in model.get("tags", [])},
            "aliases": {a["alias"]: a["version"] for a in model.get("aliases", [])},
            "versions": {
                v["version"]: {
                    "stage": v.get("current_stage"),
                    "description": v.get("description", ""),
                    "tags": {t["key"]: t.get("value", "") for t in v.get("tags", [])},
                    "source": v.get("source"),
                }
                for v in versions.get("model_versions", [])
            },
        }
    return state


@dataclass
class FormSession:
    """A browser-like session on Checkpoint's pages: its cookie and the CSRF token forms carry."""

    cookie: str
    token: str


def form_session(base_url: str, user: str = "carol") -> FormSession:
    """Pick a name on the who-am-I page (no-auth mode), as a visitor does, and keep the token."""
    session = requests.Session()
    page = session.get(f"{base_url}/checkpoint/whoami", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    chosen = session.post(
        f"{base_url}/checkpoint/whoami", data={"name": user, "csrf_token": token}, timeout=30, allow_redirects=False
    )
    assert chosen.status_code == 303, chosen.text[:300]
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    return FormSession(cookie, token)


PROMPT_TAG = "mlflow.prompt.is_prompt"


def governed_view(state: dict, gov: governance.Governance) -> dict:
    """The part of ``registry_state`` that only an applied request may change.

    A model that does not exist looks like one that holds nothing governed: creating an empty
    model is allowed (a protected name is created by Checkpoint's own account, which only an
    authenticated server can tell apart: tests/integration/test_identity_policy.py), its versions are not.
    A prompt's aliases and its own tags (the model's, and its prompt versions') pass review, as
    ``Workflow._prompt_exempt`` lets them, so only whether it is a prompt is governed (and a new
    prompt may appear: see :func:`same_governed`). A real model version registered into a
    prompt-marked model keeps its governed tags and stage.
    """
    view: dict[str, dict | None] = {}
    for name, model in state.items():
        model = model or {"tags": {}, "aliases": {}, "versions": {}}
        versions = model["versions"]
        prompt = model["tags"].get(PROMPT_TAG) == "true"
        view[name] = {
            "prompt": prompt,
            "governed_stages": {v: d["stage"] for v, d in versions.items() if gov.stage_governed(d["stage"])},
            "protected_aliases": {a: v for a, v in model["aliases"].items() if gov.alias_protected(a) and not prompt},
            "protected_model_tags": {k: v for k, v in model["tags"].items() if gov.tag_protected(k) and not prompt},
            "protected_version_tags": {
                (v, k): val
                for v, d in versions.items()
                for k, val in d["tags"].items()
                if gov.tag_protected(k) and not (prompt and d["tags"].get(PROMPT_TAG, "").lower() == "true")
            },
            "versions": sorted(versions) if gov.model_protected(name) else None,
        }
    return view


def same_governed(before: dict, after: dict, gov: governance.Governance) -> list[str]:
    """The names whose governed view changed; registering a prompt where no model was, or
    deleting (or renaming away) a prompt that holds nothing governed, is ordinary."""
    old, new = governed_view(before, gov), governed_view(after, gov)
    changed = []
    for name in old:
        empty = governed_view({name: None}, gov)[name]
        fresh_prompt = {**empty, "prompt": True}
        if old[name] == new[name]:
            continue
        if before[name] is None and old[name] == empty and new[name] == fresh_prompt:
            continue
        if after[name] is None and old[name] == fresh_prompt and new[name] == empty:
            continue
        changed.append(name)
    return changed
