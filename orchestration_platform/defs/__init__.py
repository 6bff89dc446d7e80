"""Everything Dagster sees, one folder per domain; `definitions.py` loads this package."""
