"""Modeling: hyper-parameter tuning (Optuna) and training per (symbol, model type)."""
