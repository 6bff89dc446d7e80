"""Dagster definitions: shared."""
