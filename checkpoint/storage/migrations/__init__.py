"""Alembic migrations for Checkpoint's schema (installed as ``checkpoint.storage.migrations``)."""
