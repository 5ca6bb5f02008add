"""The per-process cache of rendered diffs (web/fragments.py): rendered once per name, bounded in
bytes (least recently used dropped first), never kept without a name."""

from __future__ import annotations

from markupsafe import Markup

from checkpoint.web.fragments import Fragments


def counting(text: str):
    calls = []

    def render() -> str:
        calls.append(1)
        return text

    return render, calls


def test_a_named_fragment_renders_once():
    kept = Fragments(max_bytes=100)
    render, calls = counting("<p>diff</p>")
    assert kept.get(("req", 1), render) == Markup("<p>diff</p>")
    assert kept.get(("req", 1), render) == Markup("<p>diff</p>") and len(calls) == 1
    render2, calls2 = counting("<p>other</p>")
    assert kept.get(("req", 2), render2) == Markup("<p>other</p>") and len(calls2) == 1


def test_without_a_name_it_is_rendered_every_time():
    kept = Fragments(max_bytes=100)
    render, calls = counting("x")
    kept.get(None, render)
    kept.get(None, render)
    assert len(calls) == 2


def test_the_least_recently_used_goes_first_when_full():
    kept = Fragments(max_bytes=25)
    for name in ("a", "b"):
        kept.get(name, lambda: "0123456789")
    kept.get("a", lambda: "never")  # a is used again: b is now the oldest
    kept.get("c", lambda: "0123456789")
    render_a, calls_a = counting("again")
    render_b, calls_b = counting("again")
    assert kept.get("a", render_a) == "0123456789" and calls_a == []
    assert kept.get("b", render_b) == "again" and calls_b == [1]
    too_big, calls_big = counting("y" * 30)
    kept.get("big", too_big)
    kept.get("big", too_big)
    assert len(calls_big) == 2  # larger than the whole cache: never kept
