"""Real-browser flows: Chromium drives MLflow's own UI through `checkpoint serve` in front of a
real MLflow. A governed click lands on the pre-filled promote-request form, the request is
approved by someone else, and MLflow then shows the promotion; a non-governed click goes
straight through; user-typed text never runs as markup on any page, MLflow's included.

Screenshots go to tests/screenshots/ (flows-*.png).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from mlflow import MlflowClient
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import chromium  # noqa: F401 - the session's Chromium (a pytest fixture)
from tests.support.governed import api, make_model

SHOTS = Path(__file__).resolve().parents[1] / "screenshots"
NEXT_UI_OFF = "_mlflow_user_setting_dismiss_next_model_registry_ui"
XSS = '<img src=x onerror="window.__xss=1">'
FORM_URL = re.compile(r"/checkpoint/requests/new\?change=[\w-]+$")
DETAIL_URL = re.compile(r"/checkpoint/requests/(\d+)$")
pytestmark = pytest.mark.browser


class Tab:
    """One browser context (own cookies and localStorage) on Checkpoint, with what it saw."""

    def __init__(self, browser: Browser, base: str, classic_stage_ui: bool = False) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": 1366, "height": 768})
        if classic_stage_ui:  # MLflow's "New model registry UI" switch turned off: the stage dropdown
            self.context.add_init_script(f"localStorage.setItem({NEXT_UI_OFF!r}, 'true')")
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.form_navigations: list[str] = []
        self.panel_errors: list[str] = []
        self.page.on("request", self._on_request)
        self.page.on("pageerror", lambda exc: self.panel_errors.append(str(exc.stack)) if "panel.js" in str(exc.stack) else None)

    def _on_request(self, request) -> None:
        if request.is_navigation_request() and request.method == "GET" and "/checkpoint/requests/new?" in request.url:
            self.form_navigations.append(request.url)

    def become(self, name: str) -> None:
        """Pick a display name on /checkpoint/whoami (no-auth mode), coming back to this page."""
        here = self.page.url
        back = here[len(self.base) :] if here.startswith(self.base + "/checkpoint/") else ""
        self.page.goto(f"{self.base}/checkpoint/whoami?next={quote(back)}")
        self.page.locator("#name").fill(name)
        self.page.get_by_role("button", name="Continue").click()
        expect(self.page.locator(".cp-who strong")).to_have_text(name)

    def mlflow(self, name: str, version: str | None = None) -> Page:
        """MLflow's model (or version) page, through Checkpoint, with the panel mounted."""
        path = f"/#/models/{quote(name, safe='')}" + (f"/versions/{version}" if version else "")
        self.page.goto(self.base + path)
        if version:
            expect(self.page.get_by_role("heading", name=f"Version {version}")).to_be_visible()
        else:
            expect(self.page.locator("main")).to_contain_text(name)
        expect(self.page.locator(".cp-panel-toggle")).to_be_visible()
        return self.page

    def shot(self, name: str) -> None:
        SHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"flows-{name}.png"))

    def close(self, label: str) -> None:
        try:
            self.shot(label)  # where the test stopped, pass or fail
        finally:
            self.context.close()


@pytest.fixture
def tabs(chromium, served_checkpoint, request) -> Iterator[Callable[..., Tab]]:  # noqa: F811 - the imported fixture
    expect.set_options(timeout=30_000)  # MLflow's 4.5 MB bundle on a busy machine
    opened: list[Tab] = []

    def open_tab(classic_stage_ui: bool = False) -> Tab:
        tab = Tab(chromium, served_checkpoint.url, classic_stage_ui)
        opened.append(tab)
        return tab

    yield open_tab
    for number, tab in enumerate(opened, 1):
        tab.close(f"{request.node.name.removeprefix('test_')}-final-{number}")
    errors = [error for tab in opened for error in tab.panel_errors]
    assert not errors, f"panel.js threw: {errors}"


def registry(mlflow_server) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def edit_aliases(page: Page, add: list[str]) -> None:
    """MLflow's alias editor on a version page that has no alias yet ("Aliases: Add")."""
    page.get_by_role("button", name="Add", exact=True).click()
    dialog = page.get_by_role("dialog")
    box = dialog.get_by_role("combobox")
    for alias in add:
        box.fill(alias)
        box.press("Enter")
    page.get_by_role("button", name="Save aliases").click()


def submit_form(tab: Tab, title: str) -> int:
    """On the pre-filled new-request form: give a title, open the request; its id."""
    page = tab.page
    page.locator("#title").fill(title)
    page.get_by_role("button", name="Open promote request").click()
    page.wait_for_url(DETAIL_URL)
    expect(page.locator("h1")).to_contain_text(title)
    return int(DETAIL_URL.search(page.url).group(1))


def approve_as(tab: Tab, reviewer: str, request_id: int) -> None:
    page = tab.page
    tab.become(reviewer)
    page.wait_for_url(f"**/checkpoint/requests/{request_id}")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".cp-request-head .cp-state")).to_contain_text("applied")


def open_panel_with_keyboard(page: Page) -> None:
    toggle = page.locator(".cp-panel-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator(".cp-panel-body")).to_be_visible()


def test_alias_promotion_goes_through_a_reviewed_request(tabs, mlflow_server, served_checkpoint):
    name, _ = make_model(mlflow_server.url)
    client = registry(mlflow_server)
    client.set_registered_model_alias(name, "champion", "1")
    tab = tabs()
    page = tab.page
    tab.become("alice")

    tab.mlflow(name, "2")
    edit_aliases(page, ["champion"])
    page.wait_for_url(FORM_URL)
    expect(page.locator(".cp-lede")).to_contain_text("champion")
    expect(page.locator(".cp-lede")).to_contain_text(name)
    expect(page.locator("#title")).not_to_have_value("")  # pre-filled from the change
    tab.shot("alias-1-form")
    assert client.get_model_version_by_alias(name, "champion").version == "1"  # nothing moved yet

    title = f"Make v2 the champion of {name}"
    request_id = submit_form(tab, title)
    tab.shot("alias-2-detail")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)  # not by its author

    tab.mlflow(name)
    toggle = page.locator(".cp-panel-toggle")
    expect(toggle.locator(".cp-panel-count")).to_have_text("1")
    open_panel_with_keyboard(page)
    link = page.locator(".cp-panel-body").get_by_role("link", name=title)
    expect(link).to_have_attribute("href", f"/checkpoint/requests/{request_id}")
    expect(page.locator(".cp-panel-body")).to_contain_text("v2 → @champion")
    tab.shot("alias-3-panel")
    page.keyboard.press("Escape")  # closes, focus back on the control
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(toggle).to_be_focused()
    toggle.click()
    link.click()
    page.wait_for_url(f"**/checkpoint/requests/{request_id}")

    approve_as(tab, "bob", request_id)
    tab.shot("alias-4-applied")
    assert client.get_model_version_by_alias(name, "champion").version == "2"

    tab.mlflow(name, "2")
    expect(page.locator("main")).to_contain_text("champion")
    expect(page.locator(".cp-panel-toggle .cp-panel-count")).to_have_text("0")
    tab.shot("alias-5-mlflow")
    assert len(tab.form_navigations) == 1


def test_stage_transition_goes_through_a_reviewed_request(tabs, mlflow_server, served_checkpoint):
    name, _ = make_model(mlflow_server.url)
    client = registry(mlflow_server)
    tab = tabs(classic_stage_ui=True)
    page = tab.page
    tab.become("alice")

    tab.mlflow(name, "2")
    dropdown = page.locator(".mlflow-stage-transition-dropdown")
    expect(dropdown).to_contain_text("None")
    dropdown.click()
    page.get_by_role("menuitem").filter(has_text="Production").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Stage transition")
    # MLflow's own call leaves the dialog's comment out; the panel carries it to the form.
    comment = f"Retrained on May data & {XSS}\nAUC +0.02 on the holdout"
    dialog.get_by_label("Comment").fill(comment)
    dialog.get_by_role("button", name="OK").click()
    page.wait_for_url(re.compile(r"/checkpoint/requests/new\?change=[\w-]+&description="))
    expect(page.locator(".cp-lede")).to_contain_text("Production")
    expect(page.locator("#description")).to_have_value(comment)
    expect(page.locator(".cp-preview")).to_contain_text("What reviewers will see")
    tab.shot("stage-1-form")
    assert client.get_model_version(name, "2").current_stage == "None"
    assert page.evaluate("window.__xss") is None

    request_id = submit_form(tab, f"Ship v2 of {name} to Production")
    approve_as(tab, "bob", request_id)
    assert client.get_model_version(name, "2").current_stage == "Production"

    tab.mlflow(name, "2")
    expect(page.locator(".mlflow-stage-transition-dropdown")).to_contain_text("Production")
    tab.shot("stage-2-mlflow")


def test_non_governed_alias_goes_straight_through(tabs, mlflow_server, served_checkpoint):
    name, _ = make_model(mlflow_server.url)
    client = registry(mlflow_server)
    tab = tabs()
    page = tab.page
    tab.mlflow(name, "2")
    before = page.url

    with page.expect_response(lambda r: r.url.endswith("/registered-models/alias") and r.request.method == "POST") as sent:
        edit_aliases(page, ["candidate"])
    assert sent.value.status == 200
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("candidate")
    assert page.url == before
    assert tab.form_navigations == []
    assert client.get_model_version_by_alias(name, "candidate").version == "2"

    # An MLflow error is MLflow's: no navigation, the body as MLflow sent it.
    answer = page.evaluate("""async () => {
        const r = await fetch('ajax-api/2.0/mlflow/registered-models/get?name=no-such-model-here');
        return {status: r.status, body: await r.json()};
    }""")
    assert answer["status"] == 404 and answer["body"]["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert page.url == before and tab.form_navigations == []


def test_parallel_refusals_navigate_once(tabs, mlflow_server, served_checkpoint):
    """The alias editor sends one POST per added alias with Promise.all: two governed aliases
    are two refusals, and the page goes to the form once."""
    name, _ = make_model(mlflow_server.url)
    tab = tabs()
    page = tab.page
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.post_data or "") if r.url.endswith("/registered-models/alias") else None)
    tab.mlflow(name, "2")
    edit_aliases(page, ["champion", "production-eu"])
    page.wait_for_url(FORM_URL)
    expect(page.locator("#title")).to_be_visible()
    assert len(posts) == 2 and any("champion" in p for p in posts) and any("production-eu" in p for p in posts)
    assert len(tab.form_navigations) == 1
    assert registry(mlflow_server).get_registered_model(name).aliases == {}


def test_xhr_refusal_is_followed_too(tabs, mlflow_server, served_checkpoint):
    name, _ = make_model(mlflow_server.url)
    tab = tabs()
    page = tab.page
    tab.mlflow(name, "2")
    page.evaluate(
        """(name) => {
        const x = new XMLHttpRequest();
        x.open('POST', 'ajax-api/2.0/mlflow/registered-models/alias');
        x.setRequestHeader('Content-Type', 'application/json; charset=utf-8');
        x.send(JSON.stringify({name, alias: 'champion', version: '2'}));
    }""",
        name,
    )
    page.wait_for_url(FORM_URL)
    expect(page.locator(".cp-lede")).to_contain_text("champion")


def _no_markup_ran(page: Page) -> None:
    """No element came from the typed text, and no handler ran. An image that fails after ours
    would have failed before it: ours is the last one asked for."""
    assert page.locator('img[src="x"]').count() == 0
    fired = page.evaluate("""() => new Promise(done => {
        const probe = new Image();
        probe.onerror = probe.onload = () => done(window.__xss === undefined ? 'undefined' : String(window.__xss));
        probe.src = 'x';
    })""")
    assert fired == "undefined"


def test_typed_text_never_runs_as_markup(tabs, mlflow_server, served_checkpoint):
    base = served_checkpoint.url
    name, versions = make_model(mlflow_server.url)
    client = registry(mlflow_server)
    client.set_registered_model_alias(name, "champion", "1")  # so the request has a champion to diff against
    client.set_model_version_tag(name, "2", "note", XSS)
    client.log_param(client.get_model_version(name, "2").run_id, "xss_param", XSS)
    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": "2"}
    opened = api(base, "POST", "/requests", user="alice", json={"change": change, "title": XSS, "description": XSS})
    assert opened.status_code == 201, opened.text
    applied_id = opened.json()["id"]
    assert api(base, "POST", f"/requests/{applied_id}/comments", user="carol", json={"body": XSS}).status_code == 201
    approved = api(base, "POST", f"/requests/{applied_id}/reviews", user="bob", json={"verdict": "approve"})
    assert approved.json()["state"] == "applied", approved.text
    stage = {"kind": "transition", "name": name, "version": "2", "stage": "Production", "archive_existing_versions": False}
    still_open = api(base, "POST", "/requests", user="alice", json={"change": stage, "title": f"{XSS} open", "description": XSS})
    assert still_open.status_code == 201, still_open.text
    open_id = still_open.json()["id"]

    tab = tabs()
    page = tab.page
    page.goto(f"{base}/checkpoint/requests?state=all&model={quote(name)}")
    expect(page.get_by_role("link", name=XSS, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=f"{XSS} open", exact=True)).to_be_visible()
    _no_markup_ran(page)
    tab.shot("xss-1-list")

    page.goto(f"{base}/checkpoint/requests/{applied_id}")
    expect(page.locator("h1")).to_contain_text(XSS)
    expect(page.locator(".cp-markdown").get_by_text(XSS, exact=True)).to_have_count(2)  # description, comment
    # The diff shows the challenger's run params and version tags as text.
    expect(page.get_by_role("row").filter(has_text="xss_param").get_by_text(XSS, exact=True)).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="note").get_by_text(XSS, exact=True)).to_be_visible()
    _no_markup_ran(page)
    page.screenshot(path=str(SHOTS / "flows-xss-2-detail.png"), full_page=True)
    page.goto(f"{base}/checkpoint/requests/{open_id}")
    expect(page.locator("h1")).to_contain_text(XSS)
    _no_markup_ran(page)

    page.goto(f"{base}/checkpoint/models/{quote(name, safe='')}/history")
    expect(page.locator("main")).to_contain_text(name)
    _no_markup_ran(page)
    tab.shot("xss-3-history")

    tab.mlflow(name)
    expect(page.locator(".cp-panel-count")).to_have_text("1")
    open_panel_with_keyboard(page)
    expect(page.locator(".cp-panel-body").get_by_role("link", name=f"{XSS} open", exact=True)).to_be_visible()
    _no_markup_ran(page)
    tab.shot("xss-4-mlflow-panel")

    tab.mlflow(name, "2")  # MLflow opens the Tags section of a version that has tags
    expect(page.get_by_role("button", name="Tags")).to_have_attribute("aria-expanded", "true")
    expect(page.locator("main").get_by_text(XSS, exact=True)).to_be_visible()
    expect(page.locator(".cp-panel-toggle")).to_be_visible()
    _no_markup_ran(page)
    tab.shot("xss-5-mlflow-tag")


def test_panel_refreshes_with_conditional_gets_and_comes_back_when_removed(tabs, mlflow_server, served_checkpoint):
    name, _ = make_model(mlflow_server.url)
    tab = tabs()
    page = tab.page
    seen: list[tuple[int, str | None]] = []

    def is_summary(response) -> bool:
        return "/checkpoint/api/v1/summary?model=" in response.url

    page.on("response", lambda r: seen.append((r.status, r.request.headers.get("if-none-match"))) if is_summary(r) else None)
    with page.expect_response(is_summary) as first:
        tab.mlflow(name)
    assert first.value.status == 200
    etag = first.value.headers["etag"]
    expect(page.locator(".cp-panel-count")).to_have_text("0")

    # Navigating inside MLflow (a hash change) asks again, conditionally: nothing changed, 304.
    with page.expect_response(is_summary) as again:
        page.evaluate("(h) => { location.hash = h; }", f"#/models/{quote(name, safe='')}/versions/1")
    assert again.value.status == 304 and again.value.request.headers.get("if-none-match") == etag
    expect(page.locator(".cp-panel-count")).to_have_text("0")  # the 304 keeps what was shown

    change = {"kind": "set_alias", "name": name, "alias": "champion", "version": "1"}
    assert api(served_checkpoint.url, "POST", "/requests", user="alice", json={"change": change}).status_code == 201
    with page.expect_response(is_summary) as changed:
        page.evaluate("(h) => { location.hash = h; }", f"#/models/{quote(name, safe='')}")
    assert changed.value.status == 200
    expect(page.locator(".cp-panel-count")).to_have_text("1")

    # React or anything else removing the panel: it mounts itself again, state kept.
    page.evaluate("() => document.querySelector('.cp-panel-root').remove()")
    expect(page.locator(".cp-panel-toggle")).to_be_visible()
    expect(page.locator(".cp-panel-count")).to_have_text("1")
    assert page.locator(".cp-panel-root").count() == 1
    assert all(inm for _, inm in seen[1:]), f"every refresh after the first is conditional: {seen}"
    assert len(seen) <= 6, f"no request storm: {seen}"
