"""Evaluation: metrics, classical baselines, benchmark evaluation with its cache."""
