"""The windowed networks' own parts: windows, scaling, padding, early stopping, params validation."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from pydantic import ValidationError

from models.base import LABEL
from models.lstm import LSTMForecaster, LSTMParams
from models.nets import LSTMNet, TransformerNet
from models.transformer import TransformerParams
from models.windows import Scaler, WindowDataModule, sliding_windows, with_history

FEATURES = ("a", "b")
TINY = {"hidden_size": 4, "lookback": 3, "batch_size": 32}


def frame(rows: int, seed: int = 0, start: date = date(2023, 1, 2)) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"date": [start + timedelta(days=i) for i in range(rows)],
                         "a": rng.normal(0, 1, rows), "b": rng.normal(5, 2, rows), LABEL: rng.normal(0, 0.01, rows)})


def test_window_ending_at_t_holds_rows_up_to_t() -> None:
    rows = np.arange(10, dtype=np.float64)[:, None] * [1.0, -1.0]  # (10, 2): row index in each column
    windows = sliding_windows(rows, 4)
    assert windows.shape == (7, 4, 2) and windows.dtype == torch.float32
    for i, window in enumerate(windows):
        t = i + 3
        assert window[:, 0].tolist() == [t - 3, t - 2, t - 1, t]  # last row is t, nothing after it


def test_data_module_windows_train_within_train_and_val_on_train_tail() -> None:
    train_x, val_x = np.arange(20.0).reshape(10, 2), np.arange(20.0, 30.0).reshape(5, 2)
    data = WindowDataModule((train_x, np.arange(10.0)), (val_x, np.arange(10.0, 15.0)), 4, 8, seed=0)
    data.setup("fit")
    x, y = data.train_set.__getitems__(list(range(len(data.train_set))))
    assert x.shape == (7, 4, 2) and y.tolist() == list(range(3, 10))  # windows end at t >= lookback - 1
    vx, vy = data.val_set.__getitems__(list(range(len(data.val_set))))
    assert vx.shape == (5, 4, 2) and vy.tolist() == list(range(10, 15))
    assert vx[0, :, 0].tolist() == [14.0, 16.0, 18.0, 20.0]  # three train rows, then the first val row
    assert (vx[:, -1] == torch.tensor(val_x, dtype=torch.float32)).all()


def test_a_batch_holds_the_windows_read_one_at_a_time() -> None:
    rng = np.random.default_rng(1)
    series = [(rng.normal(size=(height, 3)), rng.normal(size=height)) for height in (9, 2, 14)]  # 2 < lookback
    data = WindowDataModule(series, [(x[:3], y[:3]) for x, y in series], 4, 5, seed=2)
    data.setup("fit")
    assert len(data.train_set) == (9 - 3) + (14 - 3) and len(data.val_set) == 3 + 2 + 3
    for dataset, loader in ((data.train_set, data.train_dataloader()), (data.val_set, data.val_dataloader())):
        batches = list(loader)
        for x, y in batches:
            assert x.shape == (len(y), 4, 3) and x.dtype == y.dtype == torch.float32
        every = torch.cat([x for x, _ in batches])
        one_by_one = torch.stack([dataset[i][0] for i in range(len(dataset))])
        # the loader's batches are a reordering (train: shuffled) of the single windows, value for value
        assert sorted(map(tuple, every.reshape(len(every), -1).tolist())) == \
            sorted(map(tuple, one_by_one.reshape(len(one_by_one), -1).tolist()))
    windows = [data.train_set[i] for i in range(len(data.train_set))]
    assert torch.equal(windows[0][0], torch.tensor(series[0][0][:4], dtype=torch.float32))
    assert float(windows[0][1]) == np.float32(series[0][1][3])  # the target of the window's last row
    assert torch.equal(windows[6][0], torch.tensor(series[2][0][:4], dtype=torch.float32))  # series 2 is skipped


def test_history_is_padded_with_zeros_when_short() -> None:
    values = np.ones((2, 2))
    assert with_history(values, None, 4).tolist() == [[0, 0]] * 3 + [[1, 1]] * 2
    history = np.full((1, 2), 7.0)
    assert with_history(values, history, 4).tolist() == [[0, 0]] * 2 + [[7, 7]] + [[1, 1]] * 2
    assert with_history(values, np.arange(10.0).reshape(5, 2), 2).tolist() == [[8, 9], [1, 1], [1, 1]]
    assert with_history(values, history, 1).tolist() == values.tolist()


def test_scaler_is_fitted_on_train_only() -> None:
    train, val = frame(80, seed=1), frame(40, seed=2, start=date(2023, 4, 1)).with_columns(pl.col("a") + 100)
    model = LSTMForecaster(FEATURES, LSTMParams(max_epochs=1, **TINY)).fit(train, val)
    expected = Scaler.fit(train.select(FEATURES).to_numpy(), train[LABEL].to_numpy())
    np.testing.assert_array_equal(model._scaler.mean, expected.mean)
    np.testing.assert_array_equal(model._scaler.std, expected.std)
    assert model._scaler.target_scale == pytest.approx(float(train[LABEL].std(ddof=0)))  # type: ignore[arg-type]
    restored = Scaler.from_state(json.loads(json.dumps(model._scaler.to_state())))
    np.testing.assert_array_equal(restored.mean, expected.mean)
    np.testing.assert_array_equal(restored.std, expected.std)
    assert restored.target_scale == model._scaler.target_scale


def test_constant_columns_and_labels_do_not_divide_by_zero() -> None:
    scaler = Scaler.fit(np.ones((5, 2)), np.zeros(5))
    assert scaler.std.tolist() == [1.0, 1.0] and scaler.target_scale == 1.0


def test_predict_without_context_pads_and_uses_context_when_given() -> None:
    train, val, test = frame(80, seed=1), frame(30, seed=2, start=date(2023, 4, 1)), frame(5, seed=3,
                                                                                          start=date(2023, 6, 1))
    model = LSTMForecaster(FEATURES, LSTMParams(max_epochs=1, **TINY)).fit(train, val)
    alone = model.predict(test)
    assert alone.shape == (5,) and alone.dtype == np.float64
    with_context = model.predict(test, context=val)
    # Rows with a full window inside `test` do not depend on the history; the first ones do.
    np.testing.assert_array_equal(alone[2:], with_context[2:])
    assert not np.array_equal(alone[:2], with_context[:2])
    # A frame shorter than the lookback still gets one prediction per row.
    assert model.predict(test.head(1)).shape == (1,)


def test_early_stopping_stops_before_max_epochs_on_noise() -> None:
    train, val = frame(200, seed=4), frame(60, seed=5, start=date(2023, 8, 1))
    params = LSTMParams(max_epochs=40, patience=2, learning_rate=1e-2, **TINY)
    model = LSTMForecaster(FEATURES, params).fit(train, val)
    summary = model.training_summary
    assert summary["epochs"] < params.max_epochs
    assert summary["epochs"] - 1 - summary["best_epoch"] == params.patience  # stopped `patience` after the best


def test_transformer_heads_must_divide_width() -> None:
    with pytest.raises(ValidationError, match=r"nhead \(3\) must divide d_model \(32\)"):
        TransformerParams(nhead=3)
    with pytest.raises(ValueError, match=r"nhead \(5\) must divide d_model \(16\)"):
        TransformerNet(2, 4, d_model=16, nhead=5, num_layers=1, dim_feedforward=8, dropout=0.0)


@pytest.mark.parametrize("net", [LSTMNet(3, 5, 2, 0.1),
                                 TransformerNet(3, 6, d_model=8, nhead=2, num_layers=1, dim_feedforward=8,
                                                dropout=0.1)])
def test_nets_map_windows_to_one_value_each(net: torch.nn.Module) -> None:
    assert net(torch.zeros(7, 6, 3)).shape == (7,)


def test_fits_in_concurrent_threads_match_sequential_fits() -> None:
    """Jobs train in a thread pool: torch's process-wide RNG must not make results depend on timing."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.models.test_contract import ar1_frame, make, parts

    train, val, test, context = parts(ar1_frame())

    def fit_predict(model_type: str) -> np.ndarray:
        return make(model_type).fit(train, val).predict(test, context=context)

    sequential = [fit_predict("lstm"), fit_predict("transformer")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        concurrent = list(pool.map(fit_predict, ["lstm", "transformer"]))
    for one, other in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(one, other)


def test_weights_of_another_network_shape_fail_with_a_retrain_hint(tmp_path: Path) -> None:
    from models.base import ModelError
    from models.sequence import WEIGHTS_FILE

    model = LSTMForecaster(FEATURES, LSTMParams(max_epochs=1, **TINY)).fit(frame(80), frame(30, seed=1))
    model.save(tmp_path)
    # What an earlier layout left behind: an output layer that read the LSTM state only.
    weights = torch.load(tmp_path / WEIGHTS_FILE, weights_only=True)
    weights["head.weight"] = weights["head.weight"][:, :TINY["hidden_size"]]
    torch.save(weights, tmp_path / WEIGHTS_FILE)

    with pytest.raises(ModelError, match=r"weights.pt does not fit this network \(size mismatch for head.weight"):
        LSTMForecaster.load(tmp_path)


def test_a_network_trained_in_a_worker_process_is_the_one_trained_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fits run in worker processes side by side; each returns exactly the weights an in-process fit gets."""
    import models.sequence as sequence
    from tests.models.test_contract import ar1_frame, make, parts

    train, val, test, context = parts(ar1_frame())
    assert sequence.fit_workers() >= 2  # the test machines have two cores or more
    in_workers = {t: make(t).fit(train, val) for t in ("lstm", "transformer")}
    assert sequence._POOL is not None
    monkeypatch.setattr(sequence, "fit_workers", lambda: 0)
    monkeypatch.setattr(sequence, "_POOL", None)
    for model_type, model in in_workers.items():
        here = make(model_type).fit(train, val)
        np.testing.assert_array_equal(here.predict(test, context=context), model.predict(test, context=context))
        assert here.training_summary == model.training_summary
