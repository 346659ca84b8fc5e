"""Support for tests/integration/test_docs.py: reading the code blocks of the documentation."""
