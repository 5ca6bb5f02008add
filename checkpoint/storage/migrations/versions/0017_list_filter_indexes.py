"""The list's model filter and title search without a scan of every request.

* ``request_changes (model_name, request_id)``: the model filter names no workspace, so the
  ``(workspace, model_name, request_id)`` index could not serve it and a model with few
  requests was found by probing every request (both dialects).
* SQLite: ``request_titles``, an FTS5 trigram index of ``promote_requests.title`` kept by
  triggers, so a search reads the titles holding the term, newest first, instead of every title
  (PostgreSQL has its trigram index from 0003). Where this SQLite lacks FTS5 the index is
  skipped and search stays correct, only slower (``storage/title_search.py`` checks for it).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

TITLE_INDEX = [
    "CREATE VIRTUAL TABLE request_titles USING fts5(title, content='promote_requests', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER request_titles_insert AFTER INSERT ON promote_requests BEGIN "
    "INSERT INTO request_titles (rowid, title) VALUES (new.id, new.title); END",
    "CREATE TRIGGER request_titles_delete AFTER DELETE ON promote_requests BEGIN "
    "INSERT INTO request_titles (request_titles, rowid, title) VALUES ('delete', old.id, old.title); END",
    "CREATE TRIGGER request_titles_update AFTER UPDATE OF title ON promote_requests BEGIN "
    "INSERT INTO request_titles (request_titles, rowid, title) VALUES ('delete', old.id, old.title); "
    "INSERT INTO request_titles (rowid, title) VALUES (new.id, new.title); END",
    "INSERT INTO request_titles (request_titles) VALUES ('rebuild')",  # the requests stored so far
]


def upgrade() -> None:
    op.create_index("ix_request_changes_model_name", "request_changes", ["model_name", "request_id"])
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    if not has_trigram_fts(bind):
        log.warning("title search index skipped: this SQLite has no FTS5 trigram tokenizer (3.34+ with FTS5)")
        return
    for statement in TITLE_INDEX:
        bind.execute(sa.text(statement))


def has_trigram_fts(bind) -> bool:
    """FTS5 compiled in and a SQLite new enough for its trigram tokenizer (3.34)."""
    version, fts5 = bind.execute(sa.text("SELECT sqlite_version(), sqlite_compileoption_used('ENABLE_FTS5')")).one()
    return bool(fts5) and tuple(int(part) for part in version.split(".")[:2]) >= (3, 34)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("request_titles_insert", "request_titles_delete", "request_titles_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS request_titles")
    op.drop_index("ix_request_changes_model_name", table_name="request_changes")
