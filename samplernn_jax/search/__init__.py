"""Hyper-parameter search on Optuna, standing on the core: SPACE files, the study and its
workers, the report."""
