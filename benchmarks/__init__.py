"""Benchmarks of artsy against same-run baselines (not tests); see ``benchmarks/run.py``."""
