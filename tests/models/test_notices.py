"""Routine library warnings are silenced process-wide; other warnings still pass."""

from __future__ import annotations

import warnings

from statsmodels.tools.sm_exceptions import ConvergenceWarning

from models.notices import silence_routine_warnings


def test_routine_warnings_are_silenced_and_others_pass() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_routine_warnings()
        warnings.warn("Maximum Likelihood optimization failed to converge. Check mle_retvals", ConvergenceWarning,
                      stacklevel=1)
        warnings.warn("Non-invertible starting MA parameters found. Using zeros as starting parameters.",
                      UserWarning, stacklevel=1)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning, stacklevel=1)
        warnings.warn("something a user should see", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something a user should see"]
