"""Checkpoint's own pages and JSON API: thin blueprints over the review domain."""
