"""What people type, rendered: markdown to HTML with raw HTML off and a small allow-list, so no
typed tag, attribute or ``javascript:`` link reaches a page. And the pages' formatting helpers:
a request's headline, links to MLflow's pages, times, sparkline points."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from markupsafe import Markup

from checkpoint.web.rendering import (
    TEMPLATE_GLOBALS,
    asked,
    flavours_line,
    format_ms,
    markdown,
    mlflow_run_url,
    mlflow_version_url,
    request_headline,
    spark_marks,
    spark_scale,
    spark_title,
    sparkline,
    target_label,
    versions_label,
)


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("**bold** and *em*", "<p><strong>bold</strong> and <em>em</em></p>\n"),
        ("`code`", "<p><code>code</code></p>\n"),
        ("- a\n- b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n"),
        (
            "| a |\n|---|\n| b |",
            "<table>\n<thead>\n<tr>\n<th>a</th>\n</tr>\n</thead>\n<tbody>\n<tr>\n<td>b</td>\n</tr>\n</tbody>\n</table>\n",
        ),
        ("[docs](https://x.example/a)", '<p><a href="https://x.example/a" rel="noopener noreferrer nofollow">docs</a></p>\n'),
        ("", ""),
        (None, ""),
    ],
    ids=["emphasis", "code", "list", "table", "link", "empty", "none"],
)
def test_markdown_renders_the_allowed_subset(text, html):
    rendered = markdown(text)
    assert isinstance(rendered, Markup)
    assert str(rendered) == html


@pytest.mark.parametrize(
    ("text", "absent"),
    [
        ("<script>alert(1)</script>", "<script"),
        ('<img src=x onerror="alert(1)">', "<img"),
        ("[click](javascript:alert(1))", "href="),
        ("[click](data:text/html,<b>x</b>)", "href="),
        ('<a href="https://x" onclick="steal()">x</a>', "<a"),
        ("![pic](https://x.example/p.png)", "<img"),
    ],
    ids=["script", "img-handler", "javascript-link", "data-link", "typed-anchor", "image"],
)
def test_nothing_active_gets_through(text, absent):
    """No element or link is made of it (it may still show, escaped, as text)."""
    assert absent not in str(markdown(text))


def test_typed_tags_come_out_as_text():
    assert str(markdown("a <b>tag</b>")) == "<p>a &lt;b&gt;tag&lt;/b&gt;</p>\n"


# -- formatting helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "label"),
    [
        ("stage:Production", "Production"),
        ("alias:champion", "@champion"),
        ("model:fraud-prod", "into fraud-prod"),
        ("tag:validated", "tag validated"),
        ("rename:fraud-v2", "rename to fraud-v2"),
        ("other:x", "other:x"),
    ],
)
def test_target_label(target, label):
    assert target_label(target) == label


def request(**fields) -> SimpleNamespace:
    base = {"model_name": "fraud", "version": "7", "target": "stage:Production", "workspace": "", "champion": None}
    return SimpleNamespace(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "headline"),
    [
        ({"champion": {"name": "fraud", "version": "5"}}, "fraud v7 → Production (replaces v5)"),
        ({"champion": {"name": "fraud-old", "version": "2"}}, "fraud v7 → Production (replaces fraud-old v2)"),
        ({}, "fraud v7 → Production (first promotion)"),
        ({"target": "tag:ok", "workspace": "team-a"}, "[team-a] fraud v7 → tag ok"),
        ({"version": "", "target": "rename:fraud-2"}, "fraud → rename to fraud-2"),
    ],
    ids=["replaces", "replaces-another-model", "first", "workspace-tag", "model-level"],
)
def test_request_headline(fields, headline):
    assert request_headline(request(**fields)) == headline


def copy(**fields) -> SimpleNamespace:
    """A copy of fraud v2 into prod.fraud, whose latest version is v1."""
    base = {
        "model_name": "prod.fraud",
        "version": "2",
        "target": "model:prod.fraud",
        "challenger": {"name": "fraud", "version": "2"},
        "champion": {"name": "prod.fraud", "version": "1"},
    }
    return request(**{**base, **fields})


def test_a_copy_names_its_source_model_not_the_target():
    assert request_headline(copy()) == "fraud v2 → into prod.fraud (latest there: v1)"
    assert request_headline(copy(champion=None)) == "fraud v2 → into prod.fraud (first promotion)"
    assert versions_label(copy()) == "fraud v2 → after v1"


def test_the_list_names_the_versions():
    assert versions_label(request(champion={"name": "fraud", "version": "5"})) == "v7 → replaces v5"
    assert versions_label(request()) == "v7"
    assert versions_label(request(version="")) == ""


def test_the_headline_names_the_champion_the_diff_compares():
    opened = request(champion={"name": "fraud", "version": "2"})
    assert request_headline(opened, {"name": "fraud", "version": "3"}) == "fraud v7 → Production (replaces v3)"
    assert request_headline(opened, None) == "fraud v7 → Production (first promotion)"
    assert request_headline(opened) == "fraud v7 → Production (replaces v2)"  # no diff read: as recorded


def test_links_to_mlflows_pages_quote_every_part():
    assert mlflow_version_url("a/b c", 3) == "/#/models/a%2Fb%20c/versions/3"
    assert mlflow_run_url(12, "r/1") == "/#/experiments/12/runs/r%2F1"


def test_times_are_utc_minutes():
    assert format_ms(1_700_000_000_000) == "2023-11-14 22:13 UTC"
    assert format_ms(None) == format_ms(0) == "—"


def test_sparklines_share_one_scale_and_skip_nan():
    nan = float("nan")
    scale = spark_scale([(0, 1.0), (10, 3.0)], [(5, nan), (20, 2.0)], None)
    assert scale == (0, 20, 1.0, 3.0)
    assert sparkline([(0, 1.0), (5, nan), (20, 3.0)], scale, width=100, height=24) == "0.0,22.0 100.0,2.0"
    assert spark_scale() == (0.0, 1.0, 0.0, 1.0)


def test_every_helper_is_a_template_global():
    """The ui blueprint registers them app-wide under their own names, as the templates call them."""
    from flask import Flask

    from checkpoint.web.ui import bp

    app = Flask(__name__)
    app.register_blueprint(bp)
    for helper in TEMPLATE_GLOBALS:
        assert app.jinja_env.globals[helper.__name__] is helper


def metric(**fields) -> SimpleNamespace:
    base = {"key": "auc", "champion": 0.9, "challenger": 0.95, "champion_history": (), "challenger_history": ()}
    return SimpleNamespace(**{**base, **fields})


def test_a_side_with_one_value_is_drawn_as_a_dot():
    marks = spark_marks(metric(challenger_history=((0, 0.8), (5, 0.95))))
    assert [m["side"] for m in marks] == ["champion", "challenger"]
    champion, challenger = marks
    assert "points" not in champion and float(champion["cx"]) == 117.0  # the last step, kept inside the box
    assert challenger["points"].count(",") == 2
    assert spark_marks(metric()) == []  # no history on either side: the numbers say it all


def test_a_history_whose_points_share_one_step_is_a_dot_too():
    champion, challenger = spark_marks(
        metric(champion_history=((3, 0.5), (3, float("nan"))), challenger=None, challenger_history=((1, 1.0), (2, 2.0)))
    )
    assert "cx" in champion and "points" not in champion
    assert "points" in challenger


def test_the_sparkline_tooltip_says_both_sides():
    title = spark_title(metric(challenger_history=((0, 0.8), (1, 0.9), (2, 0.95))))
    assert title == "auc: champion 0.9 (one value); challenger 0.8 → 0.95 over 3 steps"
    assert spark_title(metric(champion=None)).startswith("auc: champion: not logged;")


@pytest.mark.parametrize(
    ("flavors", "first", "line"),
    [
        ({"common": ["python_function", "sklearn"], "added": [], "removed": []}, False, "python_function, sklearn on both"),
        ({"common": [], "added": ["xgboost"], "removed": ["sklearn"]}, False, "added xgboost; removed sklearn"),
        ({"common": [], "added": [], "removed": []}, False, "none on either side"),
        ({"common": [], "added": ["python_function"], "removed": []}, True, "python_function (no champion to compare)"),
    ],
)
def test_flavours_read_without_empty_parts(flavors, first, line):
    text = flavours_line(SimpleNamespace(**flavors), first)
    assert text == line and not text.startswith(";")


def test_a_request_says_its_change_in_words_or_its_kind():
    item = SimpleNamespace(kind="set_alias", change={"kind": "set_alias", "name": "fd", "alias": "champion", "version": "3"})
    assert asked(item) == "set @champion of fd to v3"
    unreadable = SimpleNamespace(kind="set_alias", change={"kind": "set_alias", "name": "fd", "bogus": 1})
    assert asked(unreadable) == "a set_alias change this version of Checkpoint cannot put in words"
