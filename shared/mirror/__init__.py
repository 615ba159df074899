"""The directory mirror: users kept in Table Storage by delta rounds that notifications trigger (docs/mirror.md)."""
