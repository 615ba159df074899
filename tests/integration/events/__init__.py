"""The notification pipeline against Azurite."""
