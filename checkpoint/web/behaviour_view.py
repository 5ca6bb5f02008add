"""What the request page adds to a behavioural diff's data: the histogram of the score change
as SVG geometry, computed here from numbers only (counts checked to be whole numbers, edges
finite), never from text a model produced; the template draws the rectangles."""

from __future__ import annotations

import math
from collections.abc import Mapping

WIDTH, HEIGHT, BINS_MAX = 240, 60, 100


def bars(histogram: Mapping | None) -> dict | None:
    """``{"bars": [{x, y, w, h, count, low, high}], "low", "high", "width", "height"}``, or None
    when the histogram is absent or not made of plain numbers."""
    if not isinstance(histogram, Mapping):
        return None
    counts, edges = histogram.get("counts"), histogram.get("edges")
    if not isinstance(counts, list) or not isinstance(edges, list) or not 0 < len(counts) <= BINS_MAX:
        return None
    if len(edges) != len(counts) + 1 or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
        return None
    if any(isinstance(e, bool) or not isinstance(e, int | float) or not math.isfinite(e) for e in edges):
        return None
    top = max(counts) or 1
    width = WIDTH / len(counts)
    out = []
    for i, count in enumerate(counts):
        height = HEIGHT * count / top
        out.append(
            {"x": round(i * width, 2), "y": round(HEIGHT - height, 2), "w": round(max(width - 1, 0.5), 2), "h": round(height, 2)}
            | {"count": count, "low": float(edges[i]), "high": float(edges[i + 1])}
        )
    return {"bars": out, "low": float(edges[0]), "high": float(edges[-1]), "width": WIDTH, "height": HEIGHT}


def for_page(shown: dict | None) -> dict | None:
    """The diff as the page shows it: each dataset with its histogram's geometry."""
    if not shown or not shown.get("datasets"):
        return shown
    return shown | {"datasets": [d | {"bars": bars(d.get("histogram"))} for d in shown["datasets"]]}
