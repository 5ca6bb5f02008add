"""Any two versions compared: the page ``/checkpoint/models/<name>/compare?a=&b=[&b_model=]`` and
``GET /checkpoint/api/v1/models/<name>/compare``, thin over ``review/comparing.py``.

The page renders the request page's own diff section (``ui/_diff.html``), ``b`` in the challenger's
column and ``a`` in the champion's. Who may compare is who may read both models in MLflow (as for a
model's history and timeline: 403 for anyone else, before anything is read about either model).

Below it, the request page's behavioural diff (``ui/_behaviour.html``): the same stored diff a
request for the pair gets, on the datasets of the rules that would govern ``a``'s model
(``Policy.evaluation_for``), asked for and never waited for.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Blueprint, jsonify, render_template, request, url_for

from checkpoint import urls
from checkpoint.errors import CheckpointError
from checkpoint.review import comparing
from checkpoint.review.changes import Change
from checkpoint.web import behaviour_view
from checkpoint.web.api import workspace_arg
from checkpoint.web.context import current_services, current_user, public_base, reader, workflow

api = Blueprint("compare_api", __name__, url_prefix="/checkpoint/api/v1")
pages = Blueprint("compare", __name__, url_prefix="/checkpoint")
log = logging.getLogger(__name__)

# Non-finite floats (a metric logged as NaN) as protobuf's JSON spells them, which MLflow's own API uses:
# JSON has no NaN, and a client must still tell "NaN" from "not logged" (null).
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


@pages.context_processor
def _user():
    return {"user": current_user().name, "auth_mode": current_services().auth.mode}


def _asked() -> dict[str, str]:
    """The page's or call's parameters, as given (the form shows them back)."""
    args = request.args
    return {
        "a": args.get("a", ""),
        "b": args.get("b", ""),
        "b_model": args.get("b_model", ""),
        "workspace": workspace_arg(args.get("workspace") or None) or "",
    }


def _readable(name: str, asked: dict[str, str]) -> str:
    """``b``'s model (``name`` when no other is asked); a 403 unless the caller may read both."""
    comparing.check_model_name(name, "the model")
    b_model = comparing.check_model_name(asked["b_model"], "b_model") if asked["b_model"] else name
    if not all(reader().can_read(model, asked["workspace"]) for model in dict.fromkeys((name, b_model))):
        raise CheckpointError(403, "PERMISSION_DENIED", "Permission denied: MLflow does not let you read this model")
    return b_model


def _compare(name: str, asked: dict[str, str], b_model: str) -> comparing.Comparison:
    registry = workflow().registry_for(asked["workspace"])
    return comparing.compare(registry, asked["workspace"], name, asked["a"], b_model, asked["b"])


def _behaviour(found: comparing.Comparison) -> dict | None:
    """``b`` against ``a``'s behavioural diff as stored (asked for when there is none; never waited
    for); None where Checkpoint has no behavioural diffs."""
    behaviours = current_services().behaviours
    if behaviours is None:
        return None
    flow = workflow()
    sets = flow.policy.evaluation_for(found.a.name, found.workspace)
    try:
        return behaviours.for_versions(found.workspace, found.a, found.b, sets, flow.digest_max_bytes)
    except Exception:  # the page stands without it
        log.warning("behavioural diff of %s v%s/v%s unavailable", found.b.name, found.b.version, found.a.version, exc_info=True)
        return {"state": "error", "reason": "the behavioural diff could not be read"}


def _form_link(*changes: Change) -> str:
    """The new-request form for ``changes``: one request, or (several) one batch of them."""
    return url_for("request_form.new_request", change=[urls.change_token(c.to_json()) for c in changes])


@pages.get("/models/<path:name>/compare")
def compare_page(name: str):
    """The form, and once a version is asked, the diff of ``b`` against ``a``. A bad or unknown
    reference answers 400 or 404 with the form, the field to fix marked."""
    asked = _asked()
    found, error = None, None
    try:
        b_model = _readable(name, asked)
        if asked["a"] or asked["b"]:
            found = _compare(name, asked, b_model)
    except comparing.CompareError as exc:
        error = exc
    return render_template(
        "ui/compare.html",
        name=name,
        asked=asked,
        found=found,
        diff=found.diff if found else None,
        behaviour=behaviour_view.for_page(_behaviour(found)) if found else None,
        error=error.message if error else None,
        error_param=error.param if error else None,
        form_link=_form_link,
    ), (error.status if error else 200)


@api.get("/models/<path:name>/compare")
def compare_json(name: str):
    """The diff of ``b`` against ``a`` as data, with the promote requests it suggests."""
    asked = _asked()
    b_model = _readable(name, asked)
    found = _compare(name, asked, b_model)
    base = public_base()
    return jsonify(
        model=name,
        workspace=asked["workspace"] or "default",
        a=_side(found.a, asked["a"]),
        b=_side(found.b, asked["b"]),
        diff=finite(found.diff.to_json()),
        held=found.held,
        behaviour=_behaviour(found),
        promote=[
            {
                "change": change.to_json(),
                "asked": change.asked(),
                "url": urls.new_request_page(base, urls.change_token(change.to_json())),
            }
            for change in found.proposals
        ],
        page_url=urls.compare_page(base, name, asked["a"].strip(), asked["b"].strip(), asked["b_model"], asked["workspace"]),
    )


def _side(version, asked: str) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "asked": asked.strip(),
        "stage": version.stage,
        "aliases": sorted(version.aliases),
    }


def finite(value: Any) -> Any:
    """``value`` with every non-finite float spelled as a string (``NaN``, ``Infinity``, ``-Infinity``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[repr(value)]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
