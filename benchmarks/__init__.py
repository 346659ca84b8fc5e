"""Benchmarks for django-taskengine (not part of the test suite): ``python benchmarks/run.py``."""
