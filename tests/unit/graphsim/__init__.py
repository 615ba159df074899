"""Unit tests of the Graph simulator's pure parts (no server)."""
