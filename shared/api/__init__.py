"""The public HTTP API's logic (validation, shaping, caching), called by the thin triggers."""
