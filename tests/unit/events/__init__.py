"""Unit tests of checkpoint.events."""
