"""The score-change histogram's geometry (``web/behaviour_view.py``): from whole counts and finite
edges only; anything else draws nothing."""

from __future__ import annotations

import pytest

from checkpoint.web.behaviour_view import HEIGHT, WIDTH, bars, for_page


def test_bars_scale_to_the_tallest():
    drawn = bars({"counts": [1, 4, 0, 2], "edges": [-1.0, -0.5, 0.0, 0.5, 1.0]})
    assert drawn is not None and (drawn["low"], drawn["high"], drawn["width"]) == (-1.0, 1.0, WIDTH)
    heights = [b["h"] for b in drawn["bars"]]
    assert heights == [HEIGHT / 4, HEIGHT, 0.0, HEIGHT / 2] and drawn["bars"][1]["y"] == 0
    assert [b["x"] for b in drawn["bars"]] == [0, 60, 120, 180]


@pytest.mark.parametrize(
    "histogram",
    [
        None,
        "<script>",
        {"counts": ['1"><script>'], "edges": [0, 1]},
        {"counts": [1.5], "edges": [0, 1]},
        {"counts": [-1], "edges": [0, 1]},
        {"counts": [True], "edges": [0, 1]},
        {"counts": [1], "edges": [0, float("nan")]},
        {"counts": [1, 2], "edges": [0, 1]},
        {"counts": [], "edges": [0]},
    ],
)
def test_anything_but_plain_numbers_draws_nothing(histogram):
    assert bars(histogram) is None


def test_for_page_adds_bars_per_dataset():
    shown = {"state": "done", "datasets": [{"name": "h", "histogram": {"counts": [1], "edges": [0, 1]}}, {"name": "e"}]}
    page = for_page(shown)
    assert page is not None and page["datasets"][0]["bars"]["bars"][0]["count"] == 1 and page["datasets"][1]["bars"] is None
    assert for_page(None) is None and for_page({"state": "pending", "datasets": []}) == {"state": "pending", "datasets": []}
