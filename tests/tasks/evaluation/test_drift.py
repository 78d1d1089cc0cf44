"""PSI and per-feature drift: pure functions on small arrays."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from tasks.evaluation.drift import EPSILON, feature_drift, psi


def test_identical_samples_have_zero_psi() -> None:
    sample = np.random.default_rng(0).normal(size=1000)
    assert psi(sample, sample) == pytest.approx(0.0, abs=1e-12)


def test_shifted_sample_has_large_psi() -> None:
    rng = np.random.default_rng(1)
    assert psi(rng.normal(size=2000), rng.normal(size=2000)) < 0.05
    assert psi(rng.normal(size=2000), rng.normal(loc=1.5, size=2000)) > 1.0


def test_known_value_on_a_tiny_case() -> None:
    # One inner edge at 2.5: expected shares (0.5, 0.5), actual (0.75, 0.25).
    expected = 0.25 * math.log(1.5) + 0.25 * math.log(2.0)
    assert psi([1, 2, 3, 4], [1, 1, 1, 4], bins=2) == pytest.approx(expected)


def test_empty_bin_is_floored_not_infinite() -> None:
    value = psi([1, 2, 3, 4], [1, 1, 1, 1], bins=2)
    assert math.isfinite(value)
    assert value == pytest.approx((1 - 0.5) * math.log(1 / 0.5) + (EPSILON - 0.5) * math.log(EPSILON / 0.5))


def test_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="no finite"):
        psi([np.nan], [1.0])


def test_feature_drift_names_the_worst_feature() -> None:
    rng = np.random.default_rng(2)
    train = pl.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    window = pl.DataFrame({"a": rng.normal(size=200), "b": rng.normal(loc=3, size=200)})
    drift = feature_drift(train, window, ["a", "b"])
    assert list(drift.psi) == ["a", "b"] and drift.worst_feature == "b" and drift.worst_psi == drift.psi["b"]
    assert feature_drift(train, window, []).worst_feature is None
    with pytest.raises(ValueError, match="missing"):
        feature_drift(train, window, ["c"])
