"""The list's title search: requests whose title contains the term, case-insensitively, with
``%`` and ``_`` plain characters. One meaning on both databases; on SQLite the FTS5 trigram
index of migration 0017 finds the candidates newest first (a scan read every title: ~75 ms at
100,000 requests when few match), and the same ``ILIKE`` then decides, so what matches never
depends on the index. PostgreSQL's ``ILIKE`` is served by its trigram index (migration 0003).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from checkpoint.storage.models import RequestRow

# The FTS5 table (not an ORM model: it is SQLite's, written only by the triggers of 0017).
TITLES = sa.table("request_titles", sa.column("rowid", sa.Integer), sa.column("title", sa.String))
# Trigrams: a shorter term has none to look up, so it is matched by the scan alone.
MIN_INDEXED = 3


def title_contains(search: str):
    """The exact condition: the title holds ``search`` (any case; wildcards escaped)."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return RequestRow.title.ilike(f"%{escaped}%", escape="\\")


def phrase(search: str) -> str:
    """``search`` as one FTS5 string: every character literal, ``"`` doubled."""
    return '"' + search.replace('"', '""') + '"'


def searching(session: Session, query, search: str, before: int | None):
    """``query`` narrowed to titles holding ``search``, and the column to order it by, newest
    first: the index's rowid where the index can answer (so the newest matches are read first
    and the page stops early), else the request id."""
    query = query.where(title_contains(search))
    if len(search) < MIN_INDEXED or not has_title_index(session):
        return query, RequestRow.id
    query = query.join(TITLES, TITLES.c.rowid == RequestRow.id).where(TITLES.c.title.match(phrase(search)))
    if before is not None:  # also given to the index, which then starts there
        query = query.where(TITLES.c.rowid < before)
    return query, TITLES.c.rowid


def has_title_index(session: Session) -> bool:
    """SQLite with the FTS5 title index (0017 skips it where FTS5 is missing)."""
    bind = session.get_bind()
    return bind.dialect.name == "sqlite" and sa.inspect(session.connection()).has_table("request_titles")
