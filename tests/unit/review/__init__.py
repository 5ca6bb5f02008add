"""Unit tests of checkpoint.review."""
