"""Prefect flows: each body only wires tasks together.

Importing any flow hides URI credentials in the Prefect run logs (flows/cli.py), wherever the flow runs: a
command line, a worker, a Dask worker.
"""

from flows.cli import hide_credentials_in_run_logs

hide_credentials_in_run_logs()
