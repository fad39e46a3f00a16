"""Benchmarks that print figures (never timed assertions). Run: ``python bench/engine.py``."""
