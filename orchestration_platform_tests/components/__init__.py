"""Component tests: each component loaded from YAML the way `dg` does."""
