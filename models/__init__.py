"""Forecasting models behind one contract (models/base.py). No Prefect imports in this package."""
