"""Dagster definitions: ml."""
