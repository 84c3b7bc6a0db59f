"""Datasets: validation, writers, generators (procedural, POV-Ray), sparse splits, collections."""
