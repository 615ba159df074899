"""Unit tests of the notification pipeline (no I/O)."""
