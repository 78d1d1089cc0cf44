"""Worker processes that run jobs side by side: `python -m models.workers`, one job at a time each, over pipes.

torch's random generator, thread count and determinism flags belong to a process, so networks fitted in threads
of one process must take turns; in processes of their own they run side by side. The workers are plain
subprocesses of the running interpreter: unlike multiprocessing's spawn, they never import the caller's main
module, so a script without an `if __name__ == "__main__":` guard is not run again in them. A job is any picklable
callable with its argument; its result (or its exception) comes back pickled. A worker that dies fails the job it
ran, and a fresh one takes its place; workers exit when their parent closes their input, or dies.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any, TypeVar

__all__ = ["WorkerDied", "WorkerPool"]

T = TypeVar("T")
R = TypeVar("R")


class WorkerDied(RuntimeError):
    """The worker process running a job exited before answering (killed, out of memory, a crash)."""


class _Worker:
    """One `python -m models.workers` process."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen([sys.executable, "-m", "models.workers"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env)

    def run(self, work: Callable[[T], R], argument: T) -> R:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            pickle.dump((work, argument), stdin, protocol=pickle.HIGHEST_PROTOCOL)
            stdin.flush()
            ok, value = pickle.load(stdout)
        except (BrokenPipeError, EOFError, pickle.UnpicklingError) as exc:
            try:  # its end of the pipe closes as it exits: a moment later it has an exit code
                code: int | None = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            raise WorkerDied(f"worker process {self.process.pid} exited before answering "
                             f"(exit code {code if code is not None else 'unknown'}: {type(exc).__name__})") from None
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the worker's loop ends on end of input
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class WorkerPool:
    """At most `size` worker processes, started on first use; `run` blocks until a worker is free."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._started = 0
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._free = threading.Semaphore(size)
        atexit.register(self.close)

    def _take(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                worker = _Worker()
                self._workers.append(worker)
                return worker

    def run(self, work: Callable[[T], R], argument: T) -> R:
        """`work(argument)` in a worker process; its exception is raised here, WorkerDied when the worker died."""
        with self._free:
            worker = self._take()
            try:
                result = worker.run(work, argument)
            except WorkerDied:
                with self._lock:
                    self._workers.remove(worker)
                worker.stop()
                raise
            except BaseException:
                self._idle.put(worker)
                raise
            self._idle.put(worker)
            return result

    def close(self) -> None:
        """Stop every worker (also at exit)."""
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()


def _serve(jobs: IO[bytes], answers: IO[bytes]) -> None:
    """Run each (work, argument) read from `jobs`, write (True, result) or (False, exception) to `answers`."""
    while True:
        try:
            work, argument = pickle.load(jobs)
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, work(argument))
        except Exception as exc:
            answer = (False, exc)
        try:
            payload = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an exception that does not pickle comes back as its text
            payload = pickle.dumps((False, RuntimeError(f"{type(answer[1]).__name__}: {answer[1]} ({exc})")))
        answers.write(payload)
        answers.flush()


if __name__ == "__main__":
    # Answers go to the original stdout; whatever the work prints goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(sys.stdin.buffer, answers)
