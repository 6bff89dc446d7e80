"""Pure logic of the ml domain (no Dagster imports)."""
