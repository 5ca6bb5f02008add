"""Unit tests of checkpoint.web."""
