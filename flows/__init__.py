"""Prefect flows: each body only wires tasks together."""
