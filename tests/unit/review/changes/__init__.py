"""Unit tests of checkpoint.review.changes."""
