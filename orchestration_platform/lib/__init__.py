"""Pure logic with no Dagster import: readable, testable and benchmarkable without an instance."""
