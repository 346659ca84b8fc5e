"""Peer systems run on the benchmark workload by ``run.py --compare`` (their own venv)."""
