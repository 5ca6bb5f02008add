"""The panel's static files, read as text: panel.js is one small strict script that never writes
HTML from data, and panel.css styles only its own classes (and the data-cp-* attributes panel.js puts on
MLflow's version links and rows). (How the index page and these files
pass through a served Checkpoint is in tests/integration/test_panel_static.py.)"""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[3] / "checkpoint" / "web" / "static"
PANEL_JS = STATIC / "panel.js"
PANEL_CSS = STATIC / "panel.css"


def _js_code() -> str:
    """panel.js without comments and string contents, for the structural checks."""
    source = PANEL_JS.read_text()
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    source = re.sub(r"(?m)^\s*//.*$", "", source)
    return source


def test_panel_js_is_small_strict_and_self_contained():
    data = PANEL_JS.read_bytes()
    # Unminified and commented, sent once per MLflow page load (then revalidated by ETag): the follow,
    # the control with each request's checks and approvals, and the version markers fit in 24 KB.
    assert len(data) <= 24 * 1024, f"panel.js is {len(data)} bytes (budget 24 KB)"
    code = _js_code().strip()
    assert code.startswith("(function () {") and code.endswith("})();"), "panel.js is one IIFE"
    assert code.count("'use strict';") == 1
    assert not re.search(r"\b(import|export)\s", code), "no module syntax: it is a classic deferred script"
    assert "eval(" not in code and "new Function" not in code


def test_panel_js_never_writes_html_from_data():
    """DOM comes from createElement/textContent: no HTML sink takes anything but an empty literal."""
    code = _js_code()
    sinks = re.findall(r"\.(?:innerHTML|outerHTML)\s*\+?=\s*([^;]*)", code)
    assert all(re.fullmatch(r"\s*(''|\"\")\s*", rhs) for rhs in sinks), f"HTML assignment with data: {sinks}"
    for call in ("insertAdjacentHTML", "document.write", "createContextualFragment", "DOMParser", "srcdoc"):
        assert call not in code, f"panel.js uses {call}"
    assert "textContent" in code and "createElement" in code


def test_panel_css_only_styles_its_own_classes():
    css = re.sub(r"/\*.*?\*/", "", PANEL_CSS.read_text(), flags=re.S)
    preludes = [p.strip() for p in re.findall(r"([^{}]+)\{[^{}]*\}", css)]
    selectors = [s.strip() for p in preludes for s in p.split(",")]
    assert selectors, "panel.css has rules"
    stray = [s for s in selectors if ".cp-panel-" not in s and not s.startswith(("a[data-cp-review]", "[data-cp-review-row]"))]
    assert not stray, f"selectors outside .cp-panel-* and the version markers: {stray}"
    assert "#2272b4" in css.lower() and "-apple-system" in css  # MLflow's blue and font stack
