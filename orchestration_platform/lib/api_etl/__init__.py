"""Pure logic of the api_etl domain (no Dagster imports)."""
