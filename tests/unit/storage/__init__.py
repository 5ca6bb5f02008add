"""Unit tests of checkpoint.storage."""
