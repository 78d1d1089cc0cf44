"""Routine library warnings stay off the console and are counted per fit, in any thread; other warnings pass."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from models.arima import ArimaForecaster, ArimaParams
from models.base import LABEL
from models.notices import counted_notices, describe_notices, notice_kind, silence_routine_warnings

ROOT = Path(__file__).resolve().parents[2]
NON_STATIONARY = "non-stationary starting parameters"
# (phi of the label series, p, q) -> the notices statsmodels raises when ARIMA(p, 0, q) fits it: an explosive
# series makes its start values non-stationary (once per order tried); a stationary one raises none.
FITS = {(1.05, 1, 0): {NON_STATIONARY: 1}, (1.05, 1, 1): {NON_STATIONARY: 2}, (0.5, 1, 0): {}}


def series(phi: float, rows: int = 200, seed: int = 0) -> pl.DataFrame:
    """Labels y_t = phi * y_{t-1} + e_t and one noise feature."""
    rng = np.random.default_rng(seed)
    y = np.zeros(rows)
    for t in range(1, rows):
        y[t] = phi * y[t - 1] + rng.normal(0, 0.01)
    return pl.DataFrame({"date": [date(2021, 1, 4) + timedelta(days=i) for i in range(rows)],
                         "x": rng.normal(0, 1, rows), LABEL: y})


def fit_notices(phi: float, p: int, q: int) -> dict[str, int]:
    frame = series(phi)
    return ArimaForecaster(("x",), ArimaParams(p=p, q=q)).fit(frame.slice(0, 150), frame.slice(150, 50)).fit_notices


def test_routine_warnings_are_silenced_and_others_pass() -> None:
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, EstimationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("always", ConvergenceWarning)  # what importing statsmodels does
        silence_routine_warnings()
        warnings.warn("Maximum Likelihood optimization failed to converge. Check mle_retvals", ConvergenceWarning,
                      stacklevel=1)  # not routine: models/arima.py asks statsmodels not to warn, and checks
        warnings.warn("Non-invertible starting MA parameters found. Using zeros as starting parameters.",
                      EstimationWarning, stacklevel=1)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning, stacklevel=1)
        warnings.warn("something a user should see", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "Maximum Likelihood optimization failed to converge. Check mle_retvals", "something a user should see"]


def test_notice_kinds_and_the_one_phrase_per_fit() -> None:
    from statsmodels.tools.sm_exceptions import EstimationWarning

    assert notice_kind("Non-stationary starting autoregressive parameters found.", EstimationWarning) == NON_STATIONARY
    assert notice_kind("Non-invertible starting MA parameters found.", UserWarning) == \
        "non-invertible starting parameters"
    assert notice_kind("Non-stationary starting autoregressive parameters found.", DeprecationWarning) is None
    assert notice_kind("something a user should see", UserWarning) is None
    assert describe_notices({}) == "" and describe_notices({NON_STATIONARY: 0}) == ""
    assert describe_notices({"non-invertible starting parameters": 1, NON_STATIONARY: 2}) == (
        "3 statsmodels warnings during the fit (non-stationary starting parameters 2, "
        "non-invertible starting parameters 1)")
    assert describe_notices({NON_STATIONARY: 1}) == "1 statsmodels warning during the fit (" + NON_STATIONARY + " 1)"


def test_a_fit_counts_its_notices_and_lets_other_warnings_through() -> None:
    from statsmodels.tools.sm_exceptions import EstimationWarning

    with warnings.catch_warnings(record=True) as shown, counted_notices() as counts:
        for _ in range(2):  # each one counts, not only the first from a line of code, as "default" would show
            warnings.warn("Non-stationary starting autoregressive parameters found.", EstimationWarning, stacklevel=1)
        warnings.warn("something a user should see", UserWarning, stacklevel=1)
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)
    assert counts == {NON_STATIONARY: 2}
    assert [str(w.message) for w in shown] == ["something a user should see", "an old API"]


def test_fits_in_threads_at_once_each_count_their_own_notices(capfd: pytest.CaptureFixture[str]) -> None:
    jobs = [*FITS, *FITS]  # six fits, three kinds, all started together
    start = threading.Barrier(len(jobs))

    def fit(job: tuple[float, int, int]) -> dict[str, int]:
        start.wait()
        return fit_notices(*job)

    with warnings.catch_warnings(record=True) as shown:  # what a fit lets through to the console
        with ThreadPoolExecutor(len(jobs)) as pool:
            counted = list(pool.map(fit, jobs))
    assert counted == [FITS[job] for job in jobs]
    assert [str(w.message) for w in shown if "starting" in str(w.message)] == []
    assert "starting" not in capfd.readouterr().err


SCRIPT = """
import json, threading, warnings
import models  # as the flows do, before they fan out; statsmodels comes with the first fit
from tests.models.test_notices import FITS, fit_notices

warnings.warn("an old API", DeprecationWarning)  # shown: raised in __main__
jobs = [*FITS, *FITS]
start = threading.Barrier(len(jobs))
counted = [None] * len(jobs)

def fit(i):
    start.wait()
    if i == 0:
        warnings.warn("something a user should see", UserWarning)
    counted[i] = getattr(fit_notices(*jobs[i]), "items", dict)()  # empty if fits do not count

threads = [threading.Thread(target=fit, args=(i,)) for i in range(len(jobs))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps([dict(c) for c in counted]))
"""


def test_no_notice_of_fits_in_threads_reaches_stderr_in_a_fresh_process() -> None:
    """As in a run: `models` imported first, statsmodels only by the first fit, six fits in threads at once."""
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    warning_lines = [line for line in result.stderr.splitlines() if "Warning: " in line]
    assert len(warning_lines) == 2, result.stderr
    assert "UserWarning: something a user should see" in warning_lines[0] + warning_lines[1]
    assert "DeprecationWarning: an old API" in warning_lines[0] + warning_lines[1]
    assert "starting" not in result.stderr and result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [FITS[job] for job in [*FITS, *FITS]]
