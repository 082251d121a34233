"""Evaluation: the model against the classical baseline, and the benchmarks.

``python -m eval`` (``make eval``) prints the quality table and the speed table in one run.
"""
