"""Forecasting models behind one contract (models/base.py). No Prefect imports in this package."""

from models.notices import silence_routine_warnings

silence_routine_warnings()  # before any job fits in a thread: see models/notices.py
