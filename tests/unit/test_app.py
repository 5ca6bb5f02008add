"""``compile_templates``: a worker compiles every page template before it serves, so no page's
first view pays Jinja's compilation (most of the request page's first view before it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import render_template_string

from checkpoint import create_app
from checkpoint.app import compile_templates
from checkpoint.services import services
from checkpoint.storage import db


@pytest.fixture
def app(tmp_path):
    url = f"sqlite:///{tmp_path / 'checkpoint.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    built = create_app({"registry_url": "http://127.0.0.1:9", "database_url": url, "data_dir": tmp_path, "background": False})
    yield built
    services(built).close()


def test_every_page_template_is_compiled_and_none_again_when_used(app, monkeypatch):
    folder = Path(app.root_path if app.template_folder is None else app.template_folder)
    on_disk = {str(path.relative_to(folder)) for path in folder.rglob("*.html")}
    assert {"ui/detail.html", "ui/_diff.html", "base.html"} <= on_disk

    assert compile_templates(app) == len(on_disk)

    def refuse(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(app.jinja_env, "compile", refuse)
    for name in sorted(on_disk):
        assert app.jinja_env.get_template(name).name == name  # from the cache: no compile
    with app.app_context(), pytest.raises(AssertionError, match="compiled again"):
        render_template_string("{{ 1 }}")  # a template not compiled before is: the check can fail
