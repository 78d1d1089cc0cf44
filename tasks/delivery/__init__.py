"""Delivery: packaging and deploying champions, and the run's report."""
