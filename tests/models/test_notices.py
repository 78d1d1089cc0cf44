"""Routine library warnings are silenced process-wide; other warnings still pass."""

from __future__ import annotations

import subprocess
import sys
import warnings

from statsmodels.tools.sm_exceptions import ConvergenceWarning

from models.notices import silence_routine_warnings


def test_routine_warnings_are_silenced_and_others_pass() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("always", ConvergenceWarning)  # what importing statsmodels does
        silence_routine_warnings()
        warnings.warn("Maximum Likelihood optimization failed to converge. Check mle_retvals", ConvergenceWarning,
                      stacklevel=1)  # not routine: models/arima.py asks statsmodels not to warn, and checks
        warnings.warn("Non-invertible starting MA parameters found. Using zeros as starting parameters.",
                      UserWarning, stacklevel=1)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning, stacklevel=1)
        warnings.warn("something a user should see", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "Maximum Likelihood optimization failed to converge. Check mle_retvals", "something a user should see"]


def test_silenced_for_good_once_models_is_imported() -> None:
    """In a fresh process, statsmodels imported after `models` (as a fit in a thread does) cannot undo it."""
    script = (
        "import threading, warnings, models\n"
        "def fit():\n"
        "    import statsmodels.tsa.statespace.sarimax\n"
        "    warnings.warn('Non-invertible starting MA parameters found. Using zeros as starting parameters.')\n"
        "    warnings.warn('something a user should see', UserWarning)\n"
        "thread = threading.Thread(target=fit)\n"
        "thread.start()\n"
        "thread.join()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "something a user should see" in result.stderr and "starting MA parameters" not in result.stderr
