"""MLflow's own UI, through Checkpoint, in a real Chromium: the models list and one model's page."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import expect

from tests.support.browser import browser_page, chromium, screenshot  # noqa: F401 - pytest fixtures, by name


@pytest.fixture
def registered_model(served_checkpoint) -> str:
    """A registered model created with the MLflow client, through Checkpoint."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=served_checkpoint.url, registry_uri=served_checkpoint.url)
    # The list is sorted by name and paged; a leading digit keeps this model on the first page
    # however many models the rest of the session has registered in the shared server.
    name = f"0-smoke-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name, description="Created through Checkpoint by the browser smoke test.")
    assert client.get_registered_model(name).name == name
    return name


@pytest.mark.browser
def test_models_page_lists_the_model_and_opens_it(browser_page, screenshot, served_checkpoint, registered_model):  # noqa: F811
    page = browser_page
    origin = served_checkpoint.url
    requests_seen: list[str] = []
    page.on("request", lambda req: requests_seen.append(req.url))

    page.goto(f"{origin}/#/models")
    expect(page).to_have_title(re.compile(r"\bMLflow\b"))  # MLflow retitles pages ("Models - MLflow")
    expect(page.get_by_role("heading", name="Registered Models")).to_be_visible()
    link = page.get_by_role("link", name=registered_model, exact=True)
    expect(link).to_be_visible()
    # Served by Checkpoint: MLflow's page with Checkpoint's one injected control.
    expect(page.locator('[data-checkpoint="panel"]')).to_be_attached()

    # MLflow 3.17 greets a fresh browser on this page with a promotion for its new registry UI.
    promo = page.get_by_role("dialog").filter(has_text="new Model Registry UI")
    expect(promo).to_be_visible()
    promo.get_by_role("button", name="Close").click()
    expect(promo).to_be_hidden()
    expect(link).to_be_visible()
    screenshot("models")

    link.click()
    expect(page).to_have_url(f"{origin}/#/models/{quote(registered_model)}")
    expect(page.get_by_role("heading", name=registered_model)).to_be_visible()
    expect(page.get_by_text("Created through Checkpoint by the browser smoke test.")).to_be_visible()
    screenshot("model")

    assert page.js_errors == []
    # Every request the UI made went to Checkpoint: nothing bypassed it, nothing left the machine.
    origins = {f"{p.scheme}://{p.netloc}" for p in map(urlsplit, requests_seen) if p.scheme in ("http", "https")}
    assert origins == {origin}
