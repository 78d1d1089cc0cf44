"""backtest_candidates: backtest every evaluated candidate together, one vectorised run per lot setting, then
score each exactly as `evaluate` scores one (tasks/evaluation/evaluate.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas import JobFailure
from settings import BacktestSettings, EvaluationSettings, Market, WeightSettings
from tasks.evaluation.backtest import BacktestResult, Window, backtest_each
from tasks.evaluation.evaluate import (
    EvaluationResult,
    Predicted,
    backtest_settings,
    buy_and_hold,
    evaluation_result,
    traded,
)
from tasks.evaluation.risk import PerformanceMetrics
from tasks.operations.monitor import resource_logged

__all__ = ["Scored", "backtest_candidates"]


@dataclass(frozen=True)
class Scored:
    """The results of backtest_candidates, and the candidates it could not score."""

    results: list[EvaluationResult]
    failures: list[JobFailure]



@task(name="backtest-candidates", cache_policy=NO_CACHE)
@resource_logged
def backtest_candidates(candidates: list[Predicted], evaluation: EvaluationSettings, weights: WeightSettings,
                        markets: list[Market]) -> Scored:
    """Backtest every candidate in `markets[i]`'s lots, one vectorised run per lot setting, and score each.

    Results are those `evaluate` gives one by one. A candidate whose backtest or metrics fail is a failure
    (step "evaluate") and leaves the others alone.
    """
    groups: dict[str, list[int]] = {}
    cfgs = [backtest_settings(evaluation, market) for market in markets]
    for i, cfg in enumerate(cfgs):
        groups.setdefault(cfg.model_dump_json(), []).append(i)
    done: dict[int, EvaluationResult | str] = {}
    for members in groups.values():
        cfg = cfgs[members[0]]
        holds: dict[tuple[tuple[float, ...], ...], PerformanceMetrics] = {}  # one buy-and-hold per window
        try:
            runs: list[BacktestResult | str] = list(backtest_each([candidates[i].window for i in members], cfg))
        except Exception:  # an invalid window: backtest each alone to find and report it, the others go on
            runs = [_alone(candidates[i].window, cfg) for i in members]
        for i, run in zip(members, runs, strict=True):
            done[i] = run if isinstance(run, str) else _scored(candidates[i], run, cfg, weights, holds)
    results, failures = [], []
    for i, candidate in enumerate(candidates):
        outcome = done[i]
        if isinstance(outcome, str):
            failures.append(JobFailure(candidate.symbol, candidate.model_type, "evaluate", outcome))
            print(f"{candidate} FAILED in evaluate: {outcome}")
        else:
            results.append(outcome)
            print(f"{candidate} composite {outcome.composite:.4f} rmse {outcome.prediction.rmse:.6f} "
                  f"sharpe {outcome.strategy.sharpe:.2f} max_dd {outcome.strategy.max_drawdown:.2%}")
    return Scored(results, failures)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _alone(window: Window, cfg: BacktestSettings) -> BacktestResult | str:
    try:
        return backtest_each([window], cfg)[0]
    except Exception as exc:
        return _error(exc)


def _scored(candidate: Predicted, run: BacktestResult, cfg: BacktestSettings, weights: WeightSettings,
            holds: dict[tuple[tuple[float, ...], ...], PerformanceMetrics]) -> EvaluationResult | str:
    try:
        # Candidates on the same bars (model types of one symbol) share buy-and-hold: same inputs, same numbers.
        bars = (candidate.open, candidate.close)
        if bars not in holds:
            holds[bars] = buy_and_hold(run, cfg)
        run_traded = traded(run, np.asarray(candidate.open), candidate.prediction.r2, cfg, weights)
        return evaluation_result(candidate, run_traded, holds[bars])
    except Exception as exc:
        return _error(exc)
