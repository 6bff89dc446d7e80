"""Dagster definitions: api_etl."""
