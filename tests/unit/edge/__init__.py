"""Unit tests of checkpoint.edge."""
