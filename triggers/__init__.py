"""Blueprints: thin glue from a Functions binding to a function in ``shared/``."""
