"""What the page templates call to render: markdown for what people typed (descriptions and
comments), and the small formatting helpers (labels, links to MLflow's pages, times, sparklines).

markdown-it-py renders CommonMark with raw HTML disabled (typed tags come out as text),
and nh3 (the ammonia sanitiser) then keeps only a small allow-list of tags and safe
link schemes, so neither a parser quirk nor a ``javascript:`` link gets through.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

from checkpoint.review import batches, changes, rollback
from checkpoint.review.diff import wording

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
_TAGS = {
    "p",
    "br",
    "strong",
    "em",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "del",
}


def markdown(text: str) -> Markup:
    """Sanitised HTML for a markdown text."""
    html = _md.render(text or "")
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes={"a": {"href", "title"}, "th": {"align"}, "td": {"align"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)  # noqa: S704 - sanitised by nh3 just above


# -- formatting helpers (template globals, registered by the ui blueprint) -------------------


def target_label(target: str) -> str:
    """``stage:Production`` → ``Production``; ``alias:champion`` → ``@champion``..."""
    kind, _, value = target.partition(":")
    return {
        "stage": value,
        "alias": f"@{value}",
        "model": f"into {value}",
        "tag": f"tag {value}",
        "rename": f"rename to {value}",
    }.get(kind, target)


def asked(item) -> str:
    """A request's change in words (each kind's ``asked()``); a row no kind reads says its kind."""
    try:
        return changes.from_json(item.change).asked()
    except (changes.ChangeError, TypeError, KeyError, ValueError):
        return f"a {item.kind} change this version of Checkpoint cannot put in words"


def request_headline(item, champion: dict | None | bool = True) -> str:
    """``fraud-detector v7 → Production (replaces v5)``; a copy names its source model:
    ``fraud-detector v2 → into prod.fraud-detector (latest there: v1)``.

    ``champion``: the version the page's diff compares against (what holds the target now while
    the request is undecided), so the headline and the diff name the same one; left out, the
    champion recorded on the request (at opening, or at apply when it moved)."""
    champion = item.champion if champion is True else champion
    subject = _challenger_name(item)
    version = f" v{item.version}" if item.version else ""
    head = f"{subject}{version} → {target_label(item.target)}"
    if getattr(item, "workspace", ""):
        head = f"[{item.workspace}] {head}"
    if isinstance(champion, dict) and champion.get("version"):
        where = "" if champion.get("name") in (item.model_name, subject) else f"{champion.get('name')} "
        if item.target.startswith("model:"):
            head += f" (latest there: {where}v{champion['version']})"
        else:
            head += f" (replaces {where}v{champion['version']})"
    elif item.target.startswith(("stage:", "alias:", "model:")):
        head += " (first promotion)"
    return head


def batch_headline(item) -> str:
    """``4 changes to fraud-detector, churn-model, applied all or nothing`` (each change has its
    own headline in its section)."""
    parts = item.changes or ()
    models = list(dict.fromkeys(p["change"].get("name", "") for p in parts))
    return f"{len(parts)} changes to {', '.join(models)}, applied all or nothing"


def versions_label(item) -> str:
    """The list's versions cell: ``v7 → replaces v5``; a copy names its source model."""
    if not item.version:
        return ""
    subject = _challenger_name(item)
    label = f"{'' if subject == item.model_name else subject + ' '}v{item.version}"
    champion = item.champion or {}
    if champion.get("version"):
        label += f" → {'after' if item.target.startswith('model:') else 'replaces'} v{champion['version']}"
    return label


def request_parts(item) -> list:
    """What a list's row shows, one line per change: a batch's changes as requests of their own
    (``batches.parts``), a single-change request as itself."""
    return batches.parts(item)


def _challenger_name(item) -> str:
    """The model the challenger belongs to: the request's model, or a copy's source model."""
    return (getattr(item, "challenger", None) or {}).get("name") or item.model_name


def mlflow_version_url(name: str, version: str) -> str:
    """MLflow's own page of a model version (its UI routes after ``#``), on this same host."""
    return f"/#/models/{quote(name, safe='')}/versions/{quote(str(version), safe='')}"


def mlflow_run_url(experiment_id: str, run_id: str) -> str:
    """MLflow's own page of a run, on this same host."""
    return f"/#/experiments/{quote(str(experiment_id), safe='')}/runs/{quote(run_id, safe='')}"


def format_ms(stamp: int | None) -> str:
    """An MLflow timestamp (milliseconds) as a UTC minute; a dash for none."""
    return datetime.fromtimestamp(stamp / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC") if stamp else "—"


def spark_scale(*histories) -> tuple[float, float, float, float]:
    """One (min step, max step, min value, max value) for the lines drawn in one chart."""
    points = [p for h in histories for p in (h or ()) if p[1] == p[1]]  # NaN never equals itself
    if not points:
        return (0.0, 1.0, 0.0, 1.0)
    steps, values = [p[0] for p in points], [p[1] for p in points]
    return (min(steps), max(steps) or 1, min(values), max(values))


def sparkline(history, scale, width: int = 120, height: int = 24) -> str:
    """SVG polyline points for a metric history: numbers only, so safe in an attribute."""
    low_step, high_step, low, high = scale
    span_step = (high_step - low_step) or 1
    span = (high - low) or 1
    return " ".join(
        f"{(step - low_step) / span_step * width:.1f},{height - 2 - (value - low) / span * (height - 4):.1f}"
        for step, value in history
        if value == value
    )


def spark_marks(change, width: int = 120, height: int = 24) -> list[dict]:
    """What one metric's sparkline draws: a line for a side with a history, a dot for a side with
    a single value (at the last step drawn; a lone point would be an invisible line). Nothing when
    neither side has a history: the table's two numbers say it all."""
    sides = (("champion", change.champion_history, change.champion), ("challenger", change.challenger_history, change.challenger))
    if not any(history for _, history, _ in sides):
        return []
    last = max(step for _, history, _ in sides for step, _ in history)
    drawn = [
        (side, [p for p in (history or ([(last, value)] if value is not None else ())) if p[1] == p[1]])
        for side, history, value in sides
    ]
    scale = spark_scale(*(points for _, points in drawn))
    marks: list[dict] = []
    for side, points in drawn:
        if len({step for step, _ in points}) > 1:
            marks.append({"side": side, "points": sparkline(points, scale, width, height)})
        elif points:
            x, y = sparkline(points[-1:], scale, width, height).split(",")
            marks.append({"side": side, "cx": f"{min(max(float(x), 3.0), width - 3.0):.1f}", "cy": y})
    return marks


def spark_title(change) -> str:
    """The sparkline's tooltip: each side's first and last value and how many steps it logged."""

    def side(name: str, history, value) -> str:
        if history:
            return f"{name} {history[0][1]:.6g} → {history[-1][1]:.6g} over {len(history)} steps"
        return f"{name} {value:.6g} (one value)" if value is not None else f"{name}: not logged"

    both = [
        side("champion", change.champion_history, change.champion),
        side("challenger", change.challenger_history, change.challenger),
    ]
    return f"{change.key}: " + "; ".join(both)


def flavours_line(flavors, first_promotion: bool = False) -> str:
    """The MLmodel flavours in words: ``python_function, sklearn on both; added xgboost``."""
    if first_promotion:
        return f"{', '.join(flavors.added) or 'none'} (no champion to compare)"
    parts = [f"{', '.join(flavors.common)} on both"] if flavors.common else []
    parts += [f"added {', '.join(flavors.added)}"] if flavors.added else []
    parts += [f"removed {', '.join(flavors.removed)}"] if flavors.removed else []
    return "; ".join(parts) or "none on either side"


def rollback_headline(found: dict) -> str:
    """A rollback request's line above its diff: "rollback: v3 returns, replacing v5"."""
    return rollback.headline(found)


def diff_row_label(section: str, kind: str, first_promotion: bool = False) -> str:
    """A keyed diff row's change, in its section's words ("− only on the champion" for a tag)."""
    return wording.row_label(section, kind, first_promotion)


def diff_section_line(section: str, kd, first_promotion: bool = False) -> str:
    """The line above a keyed diff section's table ("No version tag differs (2 the same on both).")."""
    return wording.section_line(section, kd, first_promotion)


def diff_absent(section: str) -> str:
    return wording.absent(section)


# Every helper above, by the name templates call it.
TEMPLATE_GLOBALS = (
    target_label,
    asked,
    request_headline,
    versions_label,
    request_parts,
    mlflow_version_url,
    mlflow_run_url,
    format_ms,
    spark_scale,
    sparkline,
    spark_marks,
    spark_title,
    flavours_line,
    rollback_headline,
    diff_row_label,
    diff_section_line,
    diff_absent,
)
