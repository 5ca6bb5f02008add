"""The compare API's JSON (``web/compare.py``): JSON has no NaN, so a metric logged as NaN or an
infinity is spelled as MLflow's own API spells it, and stays apart from "not logged" (null)."""

from __future__ import annotations

import json
import math

from checkpoint.web.compare import finite


def test_non_finite_floats_are_spelled_and_everything_else_kept():
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5, None], "c": {"d": ((0, math.nan), (1, 2.0))}, "e": "NaN", "f": 3}
    out = finite(data)
    assert out == {"a": "NaN", "b": ["Infinity", "-Infinity", 1.5, None], "c": {"d": [[0, "NaN"], [1, 2.0]]}, "e": "NaN", "f": 3}
    json.dumps(out, allow_nan=False)  # strict JSON now
