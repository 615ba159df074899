"""The app's own package: everything the triggers share, importable and testable without the host."""

__version__ = "0.1.0"
