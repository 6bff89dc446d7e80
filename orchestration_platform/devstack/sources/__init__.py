"""The demo sources server: messy daily CSV files and JSON APIs with latency and faults."""
