"""Dagster definitions: streaming ML features (events, features, training, approval, serving)."""
