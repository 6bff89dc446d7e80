"""Pure logic of the ingestion domain (no Dagster imports)."""
