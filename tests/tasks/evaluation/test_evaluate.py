"""evaluate: prediction metrics by hand, naive baselines, the composite, and the task end to end."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from models.base import LABEL
from models.registry import model_class
from schemas import FeatureSetRef
from settings import (
    BacktestSettings,
    CrossValidationSettings,
    EvaluationSettings,
    Market,
    ModelsSettings,
    PortfolioSettings,
    WeightSettings,
)
from stores.features import FeatureStore, history_before, read_split
from stores.registry import LocalModelRegistry
from tasks.evaluation.backtest import Window
from tasks.evaluation.baselines import last_return_baseline, naive_baselines
from tasks.evaluation.crossval import summarize
from tasks.evaluation.evaluate import (
    EvaluationError,
    EvaluationResult,
    Predicted,
    backtest_settings,
    composite_score,
    evaluate,
    predict_test,
    prediction_metrics,
    trade_and_score,
)
from tasks.evaluation.score import backtest_candidates
from tasks.evaluation.significance import diebold_mariano
from tests.models.test_contract import FEATURES
from tests.tasks.modeling.test_train import write_feature_set

WEIGHTS = WeightSettings(r2=0.3, sharpe=0.4, drawdown=0.3)


def test_prediction_metrics_by_hand() -> None:
    predicted = np.array([0.01, -0.02, 0.03, 0.0])
    actual = np.array([0.02, -0.01, -0.01, 0.01])
    m = prediction_metrics(predicted, actual)
    # errors -0.01, -0.01, 0.04, -0.01; SSE 0.0019; actual mean 0.0025, SST 0.000675
    assert m.rmse == pytest.approx(math.sqrt(0.0019 / 4))
    assert m.mae == pytest.approx(0.0175)
    assert m.r2 == pytest.approx(1 - 0.0019 / 0.000675)
    assert m.directional_accuracy == 0.5  # +/+ and -/- match; +/- and 0/+ do not
    assert m.ic == pytest.approx(np.corrcoef(predicted, actual)[0, 1])
    # ranks: predicted 3,1,4,2; actual 4,1.5,1.5,3 (tied values share the average rank)
    assert m.rank_ic == pytest.approx(np.corrcoef([3, 1, 4, 2], [4, 1.5, 1.5, 3])[0, 1])


def test_prediction_metrics_match_numpy_and_scipy() -> None:
    rng = np.random.default_rng(5)
    actual = rng.normal(0, 0.02, 200)
    predicted = 0.5 * actual + rng.normal(0, 0.02, 200)
    m = prediction_metrics(predicted, actual)
    assert m.r2 == pytest.approx(1 - np.sum((predicted - actual) ** 2) / np.sum((actual - actual.mean()) ** 2))
    assert m.ic == pytest.approx(np.corrcoef(predicted, actual)[0, 1])
    assert m.rank_ic == pytest.approx(spearmanr(predicted, actual).statistic)


def test_constant_inputs_give_zero_correlation_not_nan() -> None:
    actual = np.array([0.01, -0.02, 0.03])
    m = prediction_metrics(np.full(3, 0.1), actual)
    assert (m.ic, m.rank_ic) == (0.0, 0.0)
    zero = prediction_metrics(np.zeros(3), actual)
    assert zero.directional_accuracy == 0.0  # sign 0 matches only an actual of exactly 0
    assert prediction_metrics(np.array([0.0, 0.1, -0.1]), np.array([0.0, 0.2, 0.3])).directional_accuracy == 2 / 3
    flat = np.full(3, 0.1 + 0.2)
    assert prediction_metrics(np.array([0.1, 0.2, 0.3]), flat).r2 == 0.0  # SST is 0: not -inf
    assert prediction_metrics(flat, flat).r2 == 1.0


def test_prediction_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="2 predictions for 3"):
        prediction_metrics(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="no rows"):
        prediction_metrics(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="finite"):
        prediction_metrics(np.array([np.nan]), np.zeros(1))


def test_last_return_reads_context_closes() -> None:
    close, context = np.array([10.0, 11.0, 12.1]), np.array([8.0, 9.0])
    np.testing.assert_allclose(last_return_baseline(close, context, 1), np.log([10 / 9, 11 / 10, 12.1 / 11]))
    np.testing.assert_allclose(last_return_baseline(close, context, 2), np.log([10 / 8, 11 / 9, 12.1 / 10]))
    # Too little history for the first rows: they get 0.0.
    np.testing.assert_allclose(last_return_baseline(close, context[1:], 3), [0.0, 0.0, math.log(12.1 / 9)])
    np.testing.assert_allclose(last_return_baseline(close, np.empty(0), 1), [0.0, *np.log([11 / 10, 12.1 / 11])])


@pytest.mark.parametrize("horizon", [1, 3])
def test_last_return_is_a_past_label_never_the_current_one(horizon: int) -> None:
    rng = np.random.default_rng(horizon)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    labels = np.log(closes[horizon:] / closes[:-horizon])  # label_t = ln(close_{t+h} / close_t)
    context, rows = closes[:20], closes[20:50]
    baseline = last_return_baseline(rows, context, horizon)
    # At row t it is label_{t-h}, known at t's close: the current label needs closes after t.
    np.testing.assert_allclose(baseline, labels[20 - horizon:50 - horizon])
    assert not np.allclose(baseline, labels[20:50])
    changed = rows.copy()
    changed[10:] *= 1.5  # later closes do not move earlier baselines
    np.testing.assert_array_equal(last_return_baseline(changed, context, horizon)[:10], baseline[:10])


def test_naive_baselines_score_the_same_rows() -> None:
    actual = np.array([0.02, -0.01, 0.03])
    base = naive_baselines(actual, np.array([10.0, 11.0, 12.0]), np.array([9.0]), 1)
    assert base.zero == prediction_metrics(np.zeros(3), actual)
    assert base.last_return == prediction_metrics(np.log([10 / 9, 11 / 10, 12 / 11]), actual)
    assert base.best_rmse == min(base.zero.rmse, base.last_return.rmse)


def test_composite_is_exactly_the_formula() -> None:
    assert composite_score(0.1, 1.5, -0.2, WEIGHTS) == 0.3 * 0.1 + 0.4 * 1.5 + 0.3 * (1 - 0.2)
    assert composite_score(-0.5, -1.0, -0.25, WEIGHTS) == 0.3 * -0.5 + 0.4 * 0.0 + 0.3 * (1 - 0.25)
    other = WeightSettings(r2=1.0, sharpe=0.0, drawdown=2.0)
    assert composite_score(0.2, 3.0, 0.0, other) == 1.0 * 0.2 + 0.0 * 3.0 + 2.0 * 1.0
    with pytest.raises(ValueError, match="finite"):
        composite_score(float("nan"), 1.0, -0.1, WEIGHTS)
    assert composite_score(0.1, 1.5, -0.2, WEIGHTS, backtest_meaningful=False) == 0.3 * 0.1


# -- the task end to end --------------------------------------------------------------------------
def priced_feature_set(root: Path, symbol: str, features: tuple[str, ...] = FEATURES, rows: int = 500,
                       seed: int = 3) -> FeatureSetRef:
    """write_feature_set's AR(1) set plus open and close prices whose log returns are its labels."""
    tagged = read_split(write_feature_set(root / "plain", symbol, seed=seed, rows=rows), "all")
    # r0 at row t is the return from t-1 to t (label_{t-1}), so close_t = 100 * exp(cumsum r0).
    close = 100 * np.exp(np.cumsum(tagged["r0"].to_numpy()))
    gap = np.random.default_rng(1).normal(0, 0.002, tagged.height)
    opened = np.concatenate([[close[0]], close[:-1]]) * np.exp(gap)
    tagged = tagged.with_columns(pl.Series("open", opened), pl.Series("close", close))
    return FeatureStore(root / "priced").write(symbol, tagged, features, LABEL, {"horizon": 1})


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureSetRef, ModelsSettings]:
    root = tmp_path_factory.mktemp("evaluate")
    ref = priced_feature_set(root, "VHM")
    models = ModelsSettings(registry_path=root / "registry", params={"catboost": {"iterations": 60}})
    cls = model_class("catboost")
    model = cls(FEATURES, cls.params_type.model_validate({"iterations": 60}), horizon=1, seed=11)
    model.fit(read_split(ref, "train"), read_split(ref, "val"))
    LocalModelRegistry(models.registry_path).register(model, "VHM", metrics={}, data_hash=ref.content_hash,
                                                      code_version="test", duration_seconds=0.0)
    return ref, models


def _floats(value: Any) -> list[float]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [x for f in dataclasses.fields(value) for x in _floats(getattr(value, f.name))]
    if isinstance(value, tuple):
        return [x for v in value for x in _floats(v)]
    return [float(value)] if isinstance(value, (int, float)) else []


def test_evaluate_end_to_end(registered: tuple[FeatureSetRef, ModelsSettings]) -> None:
    ref, models = registered
    cfg = EvaluationSettings(cross_validation=CrossValidationSettings(cv_folds=2))
    result = evaluate.fn("VHM", "catboost", 1, ref, cfg, models.threads, WEIGHTS, Market(),
                         LocalModelRegistry(models.registry_path))

    test = read_split(ref, "test")
    assert (result.symbol, result.model_type, result.version, result.rows) == ("VHM", "catboost", 1, test.height)
    assert (result.test_start, result.test_end) == (test["date"].min(), test["date"].max())
    assert result.data_hash == ref.content_hash
    assert all(math.isfinite(x) for x in _floats(result))
    curves = result.curves
    assert {len(c) for c in (curves.dates, curves.actual, curves.predicted, curves.equity,
                             curves.benchmark_equity)} == {test.height}
    assert list(curves.dates) == test["date"].to_list() and curves.actual == tuple(test[LABEL].to_list())
    assert curves.equity[0] == cfg.backtesting.initial_capital
    assert result.composite == composite_score(result.prediction.r2, result.strategy.sharpe,
                                               result.strategy.max_drawdown, WEIGHTS)
    assert result.sizing.meaningful and result.sizing.lot_size == 100 and result.sizing.note == ""
    assert result.price_move == pytest.approx(test["close"][-1] / test["open"][1] - 1)
    assert result.prediction == prediction_metrics(np.array(curves.predicted), np.array(curves.actual))
    # The AR(1) signal is learnable: the model beats both naive baselines, on test and on every fold.
    assert result.prediction.rmse < result.baselines.best_rmse
    # Its Diebold-Mariano test is against the better baseline, here the last return (close to the oracle
    # on an AR(1) with phi 0.7), on the same rows.
    assert result.baselines.best_name == "last_return"
    context = history_before(ref, test)["close"].to_numpy()
    best = last_return_baseline(test["close"].to_numpy(), context, 1)
    actual = np.array(curves.actual)
    assert result.against_baseline == diebold_mariano(np.array(curves.predicted) - actual, best - actual, 1)
    assert result.cv.folds == 2 and all(m.ic > 0.3 for m in result.cv.per_fold)
    assert result.trades > 0 and 0 < result.exposure <= 1
    assert result.strategy.closed_trades > 0 and result.buy_and_hold.closed_trades == 0


def test_the_cache_key_reads_the_version_and_the_inputs_not_where_the_registry_lies(
        registered: tuple[FeatureSetRef, ModelsSettings], tmp_path: Path) -> None:
    import shutil

    from tasks.operations.caching import RegisteredVersionInputs

    ref, models = registered
    inputs = {"symbol": "VHM", "model_type": "catboost", "version": 1, "ref": ref,
              "cross_validation": CrossValidationSettings(cv_folds=2), "threads": 1,
              "registry": LocalModelRegistry(models.registry_path), "pooled_cv": None, "cross_section": None}

    def key(**changed: Any) -> str | None:
        return predict_test.cache_policy.compute_key(None, inputs | changed, {})  # type: ignore[union-attr, arg-type]

    shutil.copytree(models.registry_path, tmp_path / "copy")
    assert key() is not None and key() == key(registry=LocalModelRegistry(tmp_path / "copy"))
    assert key(cross_validation=CrossValidationSettings(cv_folds=3)) != key()
    assert key(threads=2) != key()
    assert key(version=2) is None  # no such version: nothing is cached, the task runs and says why

    # A version registered again under the same number (a rebuilt registry) is another version.
    model, _ = LocalModelRegistry(tmp_path / "copy").load("catboost", "VHM", 1)
    shutil.rmtree(tmp_path / "copy")
    LocalModelRegistry(tmp_path / "copy").register(model, "VHM", metrics={}, data_hash=ref.content_hash,
                                                   code_version="test", duration_seconds=0.0)
    assert key(registry=LocalModelRegistry(tmp_path / "copy")) != key()

    # Every other input counts by content, as the commission of a universe version's portfolio does.
    policy = RegisteredVersionInputs(folder="VHM", modules=("tasks.evaluation.universe",))
    universe = {"model_type": "catboost", "version": 1, "registry": inputs["registry"], "commission": 0.001}
    assert policy.compute_key(None, universe, {}) != policy.compute_key(  # type: ignore[arg-type]
        None, universe | {"commission": 0.002}, {})  # type: ignore[arg-type]


def test_a_lot_dearer_than_the_capital_leaves_the_backtest_out_of_the_composite(
        registered: tuple[FeatureSetRef, ModelsSettings]) -> None:
    ref, models = registered
    cfg = EvaluationSettings(cross_validation=CrossValidationSettings(cv_folds=2))
    dear = evaluate.fn("VHM", "catboost", 1, ref, cfg, models.threads, WEIGHTS, Market(lot_size=100_000),
                       LocalModelRegistry(models.registry_path))
    assert not dear.sizing.meaningful and dear.trades == 0 and dear.buy_and_hold.total_return == 0
    assert "costs more than the capital of 100,000 on every day" in dear.sizing.note
    assert dear.composite == WEIGHTS.r2 * dear.prediction.r2  # not 0.3 + 0.3 * r2 from a flat equity curve
    # Fractional shares trade whatever the price: buy-and-hold then follows the price, less commission.
    fractional = cfg.model_copy(update={"backtesting": cfg.backtesting.model_copy(update={"fractional": True})})
    free = evaluate.fn("VHM", "catboost", 1, ref, fractional, models.threads, WEIGHTS, Market(lot_size=100_000),
                       LocalModelRegistry(models.registry_path))
    assert free.sizing.meaningful and free.trades > 0
    assert free.buy_and_hold.total_return == pytest.approx(free.price_move, abs=0.003)


def test_a_model_reading_absent_features_is_refused(registered: tuple[FeatureSetRef, ModelsSettings],
                                                    tmp_path: Path) -> None:
    _, models = registered
    narrower = priced_feature_set(tmp_path, "VHM", features=("r0", "r1"))
    with pytest.raises(EvaluationError, match=r"catboost v1 for VHM reads feature\(s\) missing .*: noise"):
        evaluate.fn("VHM", "catboost", 1, narrower, EvaluationSettings(), models.threads, WEIGHTS, Market(),
                    LocalModelRegistry(models.registry_path))


# -- many candidates in one backtest == one backtest per candidate -----------------------------------
def _identical(batched: EvaluationResult, reference: EvaluationResult) -> None:
    """Every field equal with ==, and every float bit for bit (float.hex: no tolerance, -0.0 is not 0.0)."""
    assert batched == reference
    assert [x.hex() for x in _floats(batched)] == [x.hex() for x in _floats(reference)]


@pytest.fixture(scope="module")
def market_of_candidates(tmp_path_factory: pytest.TempPathFactory) -> tuple[
        dict[str, FeatureSetRef], ModelsSettings, dict[str, Market]]:
    """catboost and arima for three symbols, test windows of 3 lengths, lots that fit, lots of 1 and a lot
    dearer than the capital."""
    root = tmp_path_factory.mktemp("candidates")
    models = ModelsSettings(registry_path=root / "registry", model_types=["arima", "catboost"])
    registry = LocalModelRegistry(models.registry_path)
    refs = {}
    for symbol, rows, seed in (("VHM", 500, 3), ("AAPL", 420, 4), ("DEAR", 460, 5)):
        refs[symbol] = ref = priced_feature_set(root / symbol, symbol, rows=rows, seed=seed)
        for model_type, params in (("arima", {}), ("catboost", {"iterations": 30})):
            cls = model_class(model_type)
            model = cls(FEATURES, cls.params_type.model_validate(params), horizon=1, seed=11)
            model.fit(read_split(ref, "train"), read_split(ref, "val"))
            registry.register(model, symbol, metrics={}, data_hash=ref.content_hash, code_version="test",
                              duration_seconds=0.0)
    markets = {"VHM": Market(), "AAPL": Market(lot_size=1, timezone="America/New_York"),
               "DEAR": Market(lot_size=100_000)}
    return refs, models, markets


@pytest.mark.parametrize("backtesting", [BacktestSettings(), BacktestSettings(allow_short=True, threshold=0.002)],
                         ids=["long-flat", "long-short"])
def test_backtest_candidates_gives_evaluates_results_bit_for_bit(
        market_of_candidates: tuple[dict[str, FeatureSetRef], ModelsSettings, dict[str, Market]],
        backtesting: BacktestSettings) -> None:
    refs, models, markets = market_of_candidates
    registry = LocalModelRegistry(models.registry_path)
    cfg = EvaluationSettings(backtesting=backtesting, cross_validation=CrossValidationSettings(cv_folds=2))
    jobs = [(s, t) for s in refs for t in ("arima", "catboost")]
    candidates = [predict_test.fn(s, t, 1, refs[s], cfg.cross_validation, models.threads, registry) for s, t in jobs]
    assert len({len(c.dates) for c in candidates}) == 3  # windows of different lengths share one run
    scored = backtest_candidates.fn(candidates, cfg, WEIGHTS, [markets[s] for s, _ in jobs])
    assert scored.failures == [] and len(scored.results) == len(jobs)
    for (symbol, model_type), batched in zip(jobs, scored.results, strict=True):
        _identical(batched, evaluate.fn(symbol, model_type, 1, refs[symbol], cfg, models.threads, WEIGHTS,
                                         markets[symbol], registry))
    by_symbol = {r.symbol: r for r in scored.results}
    assert not by_symbol["DEAR"].sizing.meaningful and by_symbol["DEAR"].trades == 0
    assert by_symbol["AAPL"].sizing.lot_size == 1 and by_symbol["VHM"].sizing.lot_size == 100
    assert sum(r.trades for r in scored.results) > 0


def _synthetic(symbol: str, model_type: str, rows: int, seed: int) -> Predicted:
    """A candidate with random predictions on a random walk: no model needed."""
    rng = np.random.default_rng(seed)
    close = 30 * np.exp(np.cumsum(rng.normal(0, 0.03, rows)))
    open_ = close * np.exp(rng.normal(0, 0.01, rows))
    actual, predicted = rng.normal(0, 0.02, rows), rng.normal(0, 0.02, rows)
    dates = (np.datetime64("2024-01-01") + np.arange(rows)).astype(object)
    metrics = prediction_metrics(predicted, actual)
    return Predicted(symbol=symbol, model_type=model_type, version=1, data_hash="h", horizon=1,
                     dates=tuple(dates.tolist()), open=tuple(open_.tolist()), close=tuple(close.tolist()),
                     actual=tuple(actual.tolist()), predicted=tuple(predicted.tolist()), prediction=metrics,
                     baselines=naive_baselines(actual, close, close[:1], 1),
                     against_baseline=diebold_mariano(predicted - actual, -actual, 1), cv=summarize([metrics]))


def test_many_synthetic_candidates_match_trade_and_score_and_a_bad_one_fails_alone() -> None:
    cfg = EvaluationSettings()
    candidates = [_synthetic(f"S{i}", t, 60 + 7 * i, seed=10 * i + k) for i in range(6)
                  for k, t in enumerate(("arima", "catboost"))]
    markets = [Market(lot_size=1 if i % 3 == 0 else 100) for i in range(len(candidates))]
    bad = dataclasses.replace(candidates[3], open=(0.0, *candidates[3].open[1:]))
    scored = backtest_candidates.fn([*candidates[:3], bad, *candidates[4:]], cfg, WEIGHTS, markets)
    [failure] = scored.failures
    assert (failure.symbol, failure.model_type, failure.step) == (bad.symbol, bad.model_type, "evaluate")
    assert "ValueError" in failure.error and "positive" in failure.error
    survivors = [c for i, c in enumerate(candidates) if i != 3]
    assert [r.symbol for r in scored.results] == [c.symbol for c in survivors]
    for candidate, market, result in zip(survivors, [m for i, m in enumerate(markets) if i != 3], scored.results,
                                         strict=True):
        bars = pl.DataFrame({"date": candidate.dates, "open": candidate.open, "close": candidate.close})
        window = Window(bars["date"].to_numpy(), bars["open"].to_numpy(), bars["close"].to_numpy(),
                        np.array(candidate.predicted))
        traded = trade_and_score(window, candidate.prediction.r2, backtest_settings(cfg, market), WEIGHTS)
        assert (result.strategy, result.sizing, result.composite) == (traded.strategy, traded.sizing, traded.composite)
        assert (result.trades, result.turnover, result.exposure, result.total_commission) == (
            traded.run.trades.height, traded.run.turnover, traded.run.exposure, traded.run.total_commission)
        assert result.curves.equity == tuple(traded.run.equity.tolist())
        assert result.curves.benchmark_equity == tuple(traded.run.benchmark_equity.tolist())


def test_the_per_symbol_backtest_is_untouched_by_the_portfolio_rules() -> None:
    # The band, the sales tax, T+2 and the portfolio settings belong to the top-k portfolio backtest only.
    candidates = [_synthetic(f"S{i}", "catboost", 80, seed=i) for i in range(4)]
    hose = backtest_candidates.fn(candidates, EvaluationSettings(), WEIGHTS, [Market()] * 4)
    bare = Market(price_band=None, sell_tax=0.0, settlement_days=0)
    other = EvaluationSettings(portfolio=PortfolioSettings(top_k=2, n_drop=2, initial_capital=5e5))
    plain = backtest_candidates.fn(candidates, other, WEIGHTS, [bare] * 4)
    assert hose.results == plain.results and sum(r.trades for r in hose.results) > 0


def test_psr_is_shown_only_with_30_days_in_a_position_and_5_trades() -> None:
    from datetime import date, timedelta

    from tasks.evaluation.evaluate import PSR_MIN_DAYS_IN_POSITION, PSR_MIN_TRADES

    rows = 200
    rng = np.random.default_rng(3)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    dates = np.array([date(2025, 1, 2) + timedelta(days=i) for i in range(rows)], dtype="datetime64[D]")
    cfg = BacktestSettings(lot_size=1)

    def scored(signal: np.ndarray) -> Any:
        return trade_and_score(Window(dates, close, close, signal), 0.0, cfg, WEIGHTS)

    # Long from the first day to the last: one trade, whatever the days in it.
    held = scored(np.full(rows, 0.01))
    assert held.run.trades.height == 1 < PSR_MIN_TRADES and held.strategy.psr is None
    # In and out every 5 days: many trades and about half the days in a position.
    switching = scored(np.where((np.arange(rows) // 5) % 2 == 0, 0.01, -0.01))
    assert switching.run.trades.height >= PSR_MIN_TRADES
    assert np.count_nonzero(switching.run.position) >= PSR_MIN_DAYS_IN_POSITION
    assert switching.strategy.psr is not None and 0.0 <= switching.strategy.psr <= 1.0
    # Five short trades of two days each: enough trades, too few days in a position.
    brief = np.full(rows, -0.01)
    brief[[20, 60, 100, 140, 180]] = 0.01
    few_days = scored(brief)
    assert few_days.run.trades.height == 5 and np.count_nonzero(few_days.run.position) < PSR_MIN_DAYS_IN_POSITION
    assert few_days.strategy.psr is None


def test_a_universe_version_is_never_judged_on_dates_it_fitted_on() -> None:
    from datetime import date

    from tasks.evaluation.evaluate import check_unseen

    details = {"fit_dates": {"train": ["2020-01-02", "2023-06-30"], "val": ["2023-07-04", "2024-02-29"]}}
    later = pl.DataFrame({"date": [date(2024, 3, 4), date(2024, 3, 5)]})
    check_unseen("catboost-pooled", 2, details, "VHM", later)
    check_unseen("catboost-pooled", 2, {}, "VHM", later.with_columns(pl.lit(date(2021, 1, 4)).alias("date")))
    earlier = pl.DataFrame({"date": [date(2024, 2, 29), date(2024, 3, 1)]})  # cut by another calendar
    with pytest.raises(EvaluationError, match=r"fitted and stopped early on dates up to 2024-02-29; VHM's test rows "
                                              r"start on 2024-02-29: its feature set was cut by another calendar"):
        check_unseen("catboost-pooled", 2, details, "VHM", earlier)
