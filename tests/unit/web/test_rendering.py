"""What people type, rendered: markdown to HTML with raw HTML off and a small allow-list, so no
typed tag, attribute or ``javascript:`` link reaches a page."""

from __future__ import annotations

import pytest
from markupsafe import Markup

from checkpoint.web.rendering import markdown


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
