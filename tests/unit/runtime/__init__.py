"""Unit tests of checkpoint.runtime."""
