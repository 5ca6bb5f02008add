"""How MLflow's index page and assets, and the panel's files, pass through Checkpoint.

Real HTTP against `checkpoint serve` in front of a real MLflow: the index page carries the panel's
two tags exactly once and is never answered 304 from MLflow's validators; assets pass byte-identical.
(The static checks on checkpoint/web/static/panel.js and panel.css: tests/unit/web/test_static.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from checkpoint.edge.gateway import PANEL_TAGS

STATIC = Path(__file__).resolve().parents[2] / "checkpoint" / "web" / "static"
LINK_TAG = '<link rel="stylesheet" href="/checkpoint/static/panel.css">'
SCRIPT_TAG = '<script defer src="/checkpoint/static/panel.js"></script>'
INDEX_PATHS = ["/", "/static-files/index.html", "/build/index.html"]


def test_gateway_injects_the_tags_this_test_expects():
    assert PANEL_TAGS.decode() == LINK_TAG + SCRIPT_TAG


@pytest.mark.parametrize("path", INDEX_PATHS)
def test_index_page_carries_the_panel_once_and_no_validators(served_checkpoint, mlflow_server, path):
    direct = requests.get(mlflow_server.url + path, timeout=30)
    assert direct.status_code == 200 and direct.headers.get("ETag"), "MLflow's own page has an ETag"
    assert direct.text.count("panel.js") == 0

    proxied = requests.get(served_checkpoint.url + path, timeout=30)
    assert proxied.status_code == 200
    assert proxied.headers["Content-Type"].startswith("text/html")
    assert proxied.text.count(LINK_TAG) == 1 and proxied.text.count(SCRIPT_TAG) == 1
    assert proxied.text.index(SCRIPT_TAG) < proxied.text.index("</head>")
    assert "ETag" not in proxied.headers and "Last-Modified" not in proxied.headers
    assert int(proxied.headers["Content-Length"]) == len(proxied.content)
    assert proxied.content.replace(PANEL_TAGS, b"") == direct.content  # nothing else touched

    # MLflow would answer 304 to its own validators and skip the rewrite: they are not passed on.
    validators = {"If-None-Match": direct.headers["ETag"]}
    if direct.headers.get("Last-Modified"):
        validators["If-Modified-Since"] = direct.headers["Last-Modified"]
    conditional = requests.get(served_checkpoint.url + path, timeout=30, headers=validators)
    assert (
        requests.get(mlflow_server.url + path, timeout=30, headers={"If-None-Match": direct.headers["ETag"]}).status_code == 304
    )
    assert conditional.status_code == 200
    assert conditional.content == proxied.content


def test_mlflow_bundle_passes_byte_identical(served_checkpoint, mlflow_server):
    index = requests.get(mlflow_server.url + "/", timeout=30).text
    bundle = re.search(r'src="(static-files/static/js/main\.[0-9a-f]+\.js)"', index).group(1)
    css = re.search(r'href="(static-files/static/css/main\.[0-9a-f]+\.css)"', index).group(1)
    for asset in (bundle, css):
        direct = requests.get(f"{mlflow_server.url}/{asset}", timeout=60)
        proxied = requests.get(f"{served_checkpoint.url}/{asset}", timeout=60)
        assert direct.status_code == proxied.status_code == 200
        assert len(proxied.content) == len(direct.content) > 1000
        assert proxied.content == direct.content
        assert proxied.headers.get("ETag") == direct.headers.get("ETag")  # assets keep MLflow's caching
        assert b"panel.js" not in proxied.content


@pytest.mark.parametrize(("name", "mime"), [("panel.js", "text/javascript"), ("panel.css", "text/css")])
def test_panel_files_are_served_with_their_types(served_checkpoint, name, mime):
    answer = requests.get(f"{served_checkpoint.url}/checkpoint/static/{name}", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].split(";")[0] == mime  # browsers refuse a script sent as JSON
    assert answer.content == (STATIC / name).read_bytes()
    assert answer.headers.get("X-Content-Type-Options") == "nosniff"
