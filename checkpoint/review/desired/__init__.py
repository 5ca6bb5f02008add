"""Desired state: a file (``registry.yaml``) declaring what should hold each governed target,
compared with MLflow now (``checkpoint plan``).

``parsing`` reads the file (line numbers kept for messages) or its JSON form, ``planning``
compares it with the registry and the promote requests still open, and ``rendering`` prints a
plan's JSON the way ``checkpoint plan`` shows it. ``checkpoint apply`` (not built yet) will turn
the ``changes`` of a plan's entries into one batch request.
"""

from checkpoint.review.desired.parsing import DesiredError, DesiredState, Problem, Want, from_json, load
from checkpoint.review.desired.planning import PLAN_FORMAT, Entry, Plan, Reads, plan, target_of
from checkpoint.review.desired.rendering import DRIFT_EXIT, ERROR_EXIT, NO_DRIFT_EXIT, exit_code, render

__all__ = [
    "DRIFT_EXIT",
    "ERROR_EXIT",
    "NO_DRIFT_EXIT",
    "PLAN_FORMAT",
    "DesiredError",
    "DesiredState",
    "Entry",
    "Plan",
    "Problem",
    "Reads",
    "Want",
    "exit_code",
    "from_json",
    "load",
    "plan",
    "render",
    "target_of",
]
