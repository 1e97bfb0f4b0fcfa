"""Experiment configurations (ml_collections) and analysis scripts."""
