"""Model sanity on a known signal: AR(1) returns (phi 0.7) beside 57 noise features, 1500 rows, each model
with the shipped default parameters; test RMSE as a share of the zero-return forecast's, next to the oracle's.

    python -m benchmarks.sanity [--seeds 3 6 7 0 2] [--models arima,catboost,lstm,transformer]

The oracle predicts 0.7 x today's return, the true conditional mean; its share is about 0.71 and moves with
the draw of the 225 test rows (0.69 to 0.82 over the seeds above). A model that learned the signal lands near
the oracle; one that learned nothing lands near 1.0. tests/models/test_known_signal.py holds every model to
0.78 on seed 7 (oracle 0.712).
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

PHI, SIGMA, ROWS, NOISE_FEATURES = 0.7, 0.01, 1500, 57
FEATURES = ("r0", "r1", *(f"n{i:02d}" for i in range(NOISE_FEATURES)))


def ar1_frame(seed: int, rows: int = ROWS) -> pl.DataFrame:
    """r_t = 0.7 r_(t-1) + e_t, e ~ N(0, 0.01); features r0 = r_t, r1 = r_(t-1), n00..n56 pure noise;
    the label is r_(t+1)."""
    from models.base import LABEL

    rng = np.random.default_rng(seed)
    r = np.zeros(rows + 2)
    for t in range(1, rows + 2):
        r[t] = PHI * r[t - 1] + rng.normal(0, SIGMA)
    noise = rng.normal(0, SIGMA, (rows, NOISE_FEATURES))
    return pl.DataFrame({
        "date": [date(2018, 1, 1) + timedelta(days=i) for i in range(rows)],
        "r0": r[1:rows + 1], "r1": r[:rows],
        **{name: noise[:, i] for i, name in enumerate(FEATURES[2:])},
        LABEL: r[2:rows + 2],
    })


def splits(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Train, val, test (the pipeline's 70/15/15 with its one-row embargo) and the history before test."""
    from settings import SplitSettings
    from tasks.data.split import split_bounds

    b = split_bounds(frame.height, SplitSettings(train=0.7, val=0.15, test=0.15, min_rows=30), embargo=1)
    assert b is not None, "1500 rows always split"
    part = [frame.slice(start, stop - start) for start, stop in (b.train, b.val, b.test)]
    return part[0], part[1], part[2], frame.slice(0, b.test[0])


def share_of_zero(predicted: np.ndarray, actual: np.ndarray) -> float:
    """RMSE of `predicted` divided by the RMSE of always forecasting a zero return."""
    return float(np.sqrt(np.mean((predicted - actual) ** 2)) / np.sqrt(np.mean(actual ** 2)))


def oracle_share(seed: int) -> float:
    """The share reached by the true conditional mean, 0.7 x r_t, on the test rows."""
    from models.base import LABEL

    _, _, test, _ = splits(ar1_frame(seed))
    return share_of_zero(PHI * test["r0"].to_numpy(), test[LABEL].to_numpy())


def model_share(model_type: str, params: Any, seed: int) -> tuple[float, float]:
    """(test share of the zero forecast, fit seconds) of `model_type` with `params` on seed's series."""
    from models.base import LABEL
    from models.registry import model_class

    train, val, test, history = splits(ar1_frame(seed))
    model = model_class(model_type)(FEATURES, params, horizon=1, seed=42, threads=1)
    start = time.perf_counter()
    model.fit(train, val)
    seconds = time.perf_counter() - start
    return share_of_zero(model.predict(test, context=history), test[LABEL].to_numpy()), seconds


def main(argv: list[str] | None = None) -> int:
    from settings import MODEL_TYPES

    parser = argparse.ArgumentParser(prog="python -m benchmarks.sanity", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 6, 7, 0, 2], help="series to draw")
    parser.add_argument("--models", default=",".join(sorted(MODEL_TYPES)), help="comma-separated model types")
    args = parser.parse_args(argv)

    import models  # noqa: F401  (silences the libraries' routine notices)
    from settings import load_settings
    from tasks.modeling.tune import configured_params

    shipped = load_settings().models
    oracles = {seed: oracle_share(seed) for seed in args.seeds}
    print("test RMSE / zero-return RMSE, shipped defaults; [share / oracle's share] (fit seconds)")
    print(f"{'':<12}" + "".join(f"{'seed ' + str(s):>24}" for s in args.seeds))
    print(f"{'oracle':<12}" + "".join(f"{oracles[s]:>24.3f}" for s in args.seeds), flush=True)
    for model_type in args.models.split(","):
        params = configured_params(model_type, shipped)
        cells = []
        for seed in args.seeds:
            share, seconds = model_share(model_type, params, seed)
            cells.append(f"{share:.3f} [{share / oracles[seed]:.2f}] ({seconds:4.1f}s)")
        print(f"{model_type:<12}" + "".join(f"{c:>24}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
