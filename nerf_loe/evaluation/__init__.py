"""Evaluation: MAC/parameter accounting and metrics."""
