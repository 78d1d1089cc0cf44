"""Collect a mapped fan-out as it finishes: a console line per job, a progress artifact, failures kept."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed

__all__ = ["Fanout", "JobFailure", "gather"]

J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True)
class JobFailure:
    """A job that failed, and why."""

    symbol: str
    model_type: str
    error: str


@dataclass(frozen=True)
class Fanout(Generic[R]):
    """Results of the jobs that finished, and the failures of the rest."""

    results: list[R]
    failures: list[JobFailure]


def _error_text(error: Any) -> str:
    return f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)


def gather(futures: Sequence[PrefectFuture[R]], jobs: Sequence[J], *, name: str,
           describe: Callable[[R], str], failure: Callable[[J, str], JobFailure],
           cause: Callable[[J], str | None] = lambda job: None) -> Fanout[R]:
    """Wait for every job, reporting each as it finishes; one failing job never stops the others.

    Args:
        name: what the jobs are, for the progress artifact.
        describe: one-line summary of a finished job's result.
        failure: builds the JobFailure of a job from its error text.
        cause: the real reason when a job could not start because something upstream failed.
    """
    progress = cast(UUID, create_progress_artifact(0.0, description=f"{name}: finished jobs"))
    job_of = {f.task_run_id: job for f, job in zip(futures, jobs, strict=True)}
    results: list[R] = []
    failures: list[JobFailure] = []
    for done, future in enumerate(as_completed(list(futures)), start=1):
        job = job_of[future.task_run_id]
        future.wait()
        outcome = future.result(raise_on_failure=False) if future.state.is_final() else future.state.message
        if future.state.is_completed():
            results.append(cast(R, outcome))
            print(f"[{done}/{len(jobs)}] {job} {describe(cast(R, outcome))}")
        else:
            text = cause(job) or _error_text(outcome)
            failures.append(failure(job, text))
            print(f"[{done}/{len(jobs)}] {job} FAILED: {text}")
        update_progress_artifact(progress, 100.0 * done / len(jobs))
    return Fanout(results, failures)
