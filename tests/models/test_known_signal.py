"""Every model type, with the shipped default parameters, learns a known signal hidden among noise features:
AR(1) returns (phi 0.7) beside 57 noise columns, 1500 rows (benchmarks/sanity.py prints more draws)."""

from __future__ import annotations

import pytest

from benchmarks.sanity import model_share, oracle_share
from settings import DEFAULT_CONFIG_FILE, load_settings
from tasks.modeling.tune import configured_params

SEED = 7  # a draw whose test rows give the oracle the typical share, about 0.71


def test_the_draw_is_a_typical_one() -> None:
    assert oracle_share(SEED) == pytest.approx(0.71, abs=0.01)


@pytest.mark.parametrize("model_type", ["arima", "catboost", "lstm", "transformer"])
def test_shipped_defaults_reach_the_signal(model_type: str) -> None:
    params = configured_params(model_type, load_settings(DEFAULT_CONFIG_FILE).models)  # as shipped

    share, _ = model_share(model_type, params, SEED)

    # Learning nothing scores 1.0 (a zero forecast); the oracle scores 0.71.
    assert share <= 0.78, f"{model_type}: test RMSE is {share:.3f} of the zero forecast's"
