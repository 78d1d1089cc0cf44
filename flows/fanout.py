"""Collect a mapped fan-out as it finishes: a console line per job, a progress artifact, failures kept.

A flow whose jobs failed ends Failed by raising RunFailed with its outcome; `despite_failed_jobs` lets a
parent flow carry on with what such a subflow did produce.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed

from schemas import JobFailure, RunFailed

__all__ = ["Fanout", "despite_failed_jobs", "error_text", "gather"]

J = TypeVar("J")
R = TypeVar("R")
P = ParamSpec("P")


@dataclass(frozen=True)
class Fanout(Generic[R]):
    """Results of the jobs that finished, and the failures of the rest."""

    results: list[R]
    failures: list[JobFailure]


def error_text(error: Any) -> str:
    """"Type: message" for an exception, else the text itself."""
    return f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)


def gather(futures: Sequence[PrefectFuture[R]], jobs: Sequence[J], *, name: str,
           describe: Callable[[R], str], failure: Callable[[J, str], JobFailure]) -> Fanout[R]:
    """Wait for every job, reporting each as it finishes; one failing job never stops the others.

    Args:
        name: what the jobs are, for the progress artifact.
        describe: one-line summary of a finished job's result.
        failure: builds the JobFailure of a job from its error text (naming the real cause when the job
            could not start because something upstream failed).
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
            failed = failure(job, error_text(outcome))
            failures.append(failed)
            print(f"[{done}/{len(jobs)}] {job} FAILED in {failed.step}: {failed.error}")
        update_progress_artifact(progress, 100.0 * done / len(jobs))
    return Fanout(results, failures)


def despite_failed_jobs(subflow: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `subflow`; when it ends Failed because some of its jobs failed, return what it produced anyway.

    The subflow's run stays Failed in the UI, and its failures are in the returned outcome.
    """
    try:
        return subflow(*args, **kwargs)
    except RunFailed as exc:
        return cast(R, exc.outcome)
