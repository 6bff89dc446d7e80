"""Tests of the shared definitions (pools, automation)."""
