"""The request page as a new user reads it (issue 17 §4): the change in words and no raw JSON
(the API has the stored form), a copy named by its source, one champion for the headline and the diff, nothing
"awaited" or "blocked" once decided; in a real Chromium at desktop width and at 390 px."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mlflow import MlflowClient
from playwright.sync_api import expect

from checkpoint import create_app
from tests.support.apps import close_app, live
from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name
from tests.support.governed import api, make_model, unique

pytestmark = pytest.mark.browser

POLICY = """
rules:
  - name: words
    models: ["words-*"]
    targets: ["alias:champion"]
    required_approvals: 1
    checks:
      - {name: why, kind: description, min_length: 10}
"""
MARKUP = "<b>bold</b>"
# The innermost elements reaching past 390 px, to say what overflows.
WIDE = """[...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > 390.5 && ![...e.children].some(c => c.getBoundingClientRect().right > 390.5))
  .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""


@pytest.fixture
def site(mlflow_server, sqlite_url, tmp_path) -> Iterator:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = {
        "registry_url": mlflow_server.url,
        "database_url": sqlite_url,
        "data_dir": tmp_path,
        "policy_file": policy,
        "background": False,
    }
    application = create_app(settings)
    try:
        with live(application, sqlite_url) as served:
            yield served
    finally:
        close_app(application)


def open_request(base: str, change: dict) -> int:
    answer = api(base, "POST", "/requests", user="alice", json={"change": change})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["id"]


def visible_text(page) -> str:
    """What a reader sees: a closed <details> keeps its content out of innerText."""
    return page.locator("main").inner_text()


def write_mlmodel(client: MlflowClient, run_id: str, tmp_path, flavors: list[str]) -> None:
    """An MLmodel file naming ``flavors`` where the version's source points (``<run>/model``)."""
    folder = tmp_path / run_id
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors:\n" + "".join(f"  {f}:\n    loader_module: x\n" for f in flavors))
    client.log_artifact(run_id, str(folder / "MLmodel"), "model")


def fits_in_390(page) -> None:
    """Nothing wider than a 390 px phone: the header wraps instead of pushing the page sideways."""
    wide = page.evaluate(WIDE)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, wide
    header = page.locator(".cp-top").bounding_box()
    assert header is not None and header["x"] + header["width"] <= 390
    for item in page.locator(".cp-top a, .cp-top .cp-who").all():
        box = item.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, item.inner_text()


def test_the_request_page_reads_in_words(browser_page, screenshot, site, mlflow_server, tmp_path):  # noqa: F811
    page, base = browser_page, site.url
    direct = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name, (v1, v2, v3) = make_model(mlflow_server.url, unique("words"), versions=3)
    direct.set_registered_model_alias(name, "champion", v1)
    champion_run, challenger_run = (direct.get_model_version(name, v).run_id for v in (v2, v3))
    direct.log_metric(champion_run, "auc", 0.9)  # one value: a dot
    for step, value in enumerate((0.8, 0.85, 0.9, 0.95)):
        direct.log_metric(challenger_run, "auc", value, step=step)
    write_mlmodel(direct, champion_run, tmp_path, ["python_function"])
    write_mlmodel(direct, challenger_run, tmp_path, ["python_function", "sklearn"])
    promote = open_request(base, {"kind": "set_alias", "name": name, "alias": "champion", "version": v3})
    direct.set_registered_model_alias(name, "champion", v2)  # moved outside Checkpoint after opening
    run_id = direct.get_model_version(name, v2).run_id
    copy = open_request(
        base,
        {
            "kind": "create_version",
            "name": f"prod.{name}",
            "source": f"models:/{name}/{v2}",
            "run_id": run_id,
            "tags": [{"key": "note", "value": MARKUP}],
        },
    )

    # A promotion: the sentence, the champion the diff compares named in the headline too.
    page.goto(f"{base}/checkpoint/requests/{promote}")
    expect(page.locator(".cp-asked")).to_contain_text(f"set @champion of {name} to v{v3}")
    expect(page.locator(".cp-headline")).to_have_text(f"{name} v{v3} → @champion (replaces v{v2})")
    expect(page.locator("#diff-h")).to_contain_text(f"{name} v{v3} (challenger) against {name} v{v2} (champion)")
    expect(page.locator(".cp-approvals")).to_contain_text("blocked by check why")
    text = visible_text(page)
    assert '"kind"' not in text and '"alias"' not in text and "{" not in text
    assert "{" not in page.locator("main").text_content()  # not even folded away: no raw JSON on the page
    # The diff: flavours without an empty part, a sparkline with a legend, a tooltip and a dot.
    expect(page.locator(".cp-flavours")).to_have_text("Flavours: python_function on both; added sklearn")
    spark = page.locator("svg.cp-spark")
    expect(spark.locator("title")).to_have_text("auc: champion 0.9 (one value); challenger 0.8 → 0.95 over 4 steps")
    expect(spark.locator("circle.cp-spark-champion")).to_have_count(1)
    expect(spark.locator("polyline.cp-spark-challenger")).to_have_count(1)
    expect(page.locator(".cp-spark-legend")).to_have_text("champion challenger")
    screenshot("promotion")

    # A copy into prod.*: named by its source model everywhere, typed markup shown as text.
    page.goto(f"{base}/checkpoint/requests/{copy}")
    asked = page.locator(".cp-asked")
    expect(asked).to_contain_text(f"copy {name} v{v2} into prod.{name} as a new version, tagged note={MARKUP}")
    assert asked.locator("b").count() == 0
    expect(page.locator(".cp-headline")).to_have_text(f"{name} v{v2} → into prod.{name} (first promotion)")
    expect(page.locator("#diff-h")).to_have_text(f"Diff: {name} v{v2} (challenger), first promotion (no champion)")
    text = visible_text(page)
    assert '"run_id"' not in text and '"body"' not in text and '"tags"' not in text
    assert run_id not in asked.inner_text()  # the run is shown where it belongs, not in the words
    expect(page.locator(".cp-sum-moves")).to_have_text(f"prod.{name}: new version from {name} v{v2}")
    screenshot("copy")
    page.set_viewport_size({"width": 390, "height": 844})
    fits_in_390(page)
    screenshot("copy-390")

    page.goto(f"{base}/checkpoint/requests?state=all&model=prod.{name}")
    fits_in_390(page)
    screenshot("list-390")
    page.set_viewport_size({"width": 1440, "height": 900})
    expect(page.locator(".cp-table tbody tr").first).to_contain_text(f"{name} v{v2}")
    for field in ("model", "target", "author", "q", "workspace"):  # labelled; a placeholder never passes for a value
        box = page.locator(f".cp-filters input[name={field}]")
        assert box.evaluate("e => e.closest('label') !== null")
        assert not box.input_value() or field == "model"
    expect(page.locator(".cp-filters input[name=model]")).to_have_attribute("placeholder", "e.g. fraud-detector (exact name)")
    screenshot("list")

    # Withdrawn: nothing is awaited or blocked any more.
    assert api(base, "POST", f"/requests/{promote}/withdraw", user="alice").status_code == 200
    page.goto(f"{base}/checkpoint/requests/{promote}")
    expect(page.locator(".cp-meta")).to_contain_text("withdrawn")
    expect(page.locator(".cp-approvals")).to_have_text("0 of 1 approvals")
    assert "blocked by" not in visible_text(page).lower()
    screenshot("withdrawn")
