"""The weekly evaluation's and the daily retrain's decisions, judged by their error rates.

    python -m benchmarks.monitoring [--seeds 20] [--symbols VCB,VIC,VHM] [--universe VN30] [--history 1000]
                                    [--weeks 52] [--break-week 26]

Per seed, the demo market (`--edge reversion`) gives each symbol `--history` sessions on which the data steps build
its features and the shipped CatBoost is fitted, as a training run does; its composite over the test split is its
score at deployment. Then `--weeks` weekly evaluations follow, each scoring the model on the sessions up to that week
with the weekly evaluation's own steps (tasks.evaluation.drift.assess, tasks.operations.schedule.degraded) and the
shipped settings. Three markets share every bar before the break: the stationary one (nothing changes: every flag is
a false alarm), one whose volatility doubles from week `--break-week` on, and one whose planted reversal turns into
momentum then (the model's edge becomes a loss); the market's volatility is the median over `--universe`. Printed per
market: the share of weekly checks that flag a healthy model (before the break), by cause (the symbol's or the
market's daily range), and the share of them whose performance (composite / composite at deployment) is below
`performance_threshold`: the daily retrain reads the weekly score as the live one, so that is how often it would
retrain a healthy model; then the share of models flagged, or retrained, within 2 weeks of the break.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

END = date(2026, 10, 30)
DETECT_WEEKS = 2
MARKETS = ("stationary", "volatility x2", "reversal flipped")


@dataclass
class Tally:
    """One market's weekly verdicts and daily retrain triggers."""

    healthy_checks: int = 0
    """weekly checks of a model whose market had not changed yet."""
    false_alarms: int = 0
    """healthy checks the weekly evaluation flagged."""
    by_symbol: int = 0
    by_market: int = 0
    false_retrains: int = 0
    """healthy checks whose performance share would make the daily retrain retrain."""
    models: int = 0
    flagged: int = 0
    """models the weekly evaluation flagged within DETECT_WEEKS weekly checks of the break."""
    retrained: int = 0
    """models the daily retrain's performance rule would retrain within DETECT_WEEKS weeks of the break."""
    weeks_to_flag: list[int] = field(default_factory=list)
    shares: list[float] = field(default_factory=list)
    """healthy checks' composite as a share of the composite at deployment."""

    def line(self, name: str, broken: bool) -> str:
        n = max(self.healthy_checks, 1)
        text = (f"  {name:<17} healthy checks {self.healthy_checks:5d}: weekly flags {self.false_alarms / n:6.1%} "
                f"(symbol {self.by_symbol / n:5.1%}, market {self.by_market / n:5.1%}); daily retrains "
                f"{self.false_retrains / n:6.1%}")
        if self.shares:
            quantiles = " / ".join(f"{v:.2f}" for v in np.quantile(self.shares, [0.05, 0.5, 0.95]))
            text += f" (performance share 5/50/95 %: {quantiles})"
        if broken:
            median = f"{statistics.median(self.weeks_to_flag):.0f}" if self.weeks_to_flag else "-"
            m = max(self.models, 1)
            text += (f"\n{'':19}after the break, within {DETECT_WEEKS} weeks: weekly flags {self.flagged / m:6.1%} of "
                     f"{self.models} models, daily retrains {self.retrained / m:6.1%}; median weeks to the first "
                     f"weekly flag {median}, never flagged {self.models - len(self.weeks_to_flag)}")
        return text


def _market(symbols: list[str], days: int, seed: int, kind: str, break_day: int) -> dict[str, Any]:
    from tasks.data.ingest import PLANTED_EDGES, MarketBreak, synthetic_market

    edge = PLANTED_EDGES["reversion"]
    breaks = {"stationary": None, "volatility x2": MarketBreak(break_day, volatility=2.0),
              "reversal flipped": MarketBreak(break_day, reversal_flips=True)}[kind]
    return synthetic_market(symbols, days, seed, END, reversal=edge.reversal, structure=edge.structure,
                            pull=edge.pull, breaks=breaks)


def _deployed(symbols: list[str], history: dict[str, Any], settings: Any) -> dict[str, tuple[Any, float]]:
    """Each symbol's model fitted on its history as a training run fits it, and its composite over the test split."""
    import polars as pl

    from models.registry import model_class
    from tasks.data.calendar import run_calendar
    from tasks.data.clean import clean
    from tasks.data.engineer import engineer
    from tasks.data.select import select
    from tasks.data.split import PART, split
    from tasks.evaluation.drift import assess
    from tasks.evaluation.evaluate import backtest_settings
    from tasks.modeling.tune import configured_params

    data, cls = settings.data, model_class("catboost")
    params = cls.params_type(**configured_params("catboost", settings.models).model_dump())
    calendar = run_calendar({s: bars["date"].to_list() for s, bars in history.items()}, data.features, data.split)
    out = {}
    for symbol in symbols:
        market = settings.markets.of(symbol)
        cleaned = clean.fn(history[symbol], symbol, data.cleaning, market)
        selected = select.fn(engineer.fn(cleaned, symbol, data.features, data.split), symbol, data.features,
                             calendar, data.selection)
        parts = split.fn(selected, symbol, data.features, data.split, calendar)
        model = cls(selected.report.kept, params, horizon=data.features.horizon, seed=settings.models.seed)
        model.fit(parts.train, parts.val)
        scored = assess(model, parts.all.filter(pl.col(PART) != "latest").drop(PART), symbol, "catboost", 1, "",
                        parts.test.height, settings.scheduling.weekly_evaluation.drift_days,
                        settings.scheduling.weekly_evaluation.reference_days,
                        backtest_settings(settings.evaluation, market), settings.model_selection.weights)
        out[symbol] = (model, scored.composite)
    return out


def _market_shifts(universe: dict[str, Any], history: int, weeks: int, settings: Any) -> list[Any]:
    """The market's volatility shift at each week's end, over the universe's bars."""
    from tasks.evaluation.drift import market_shift, volatility_shift

    weekly = settings.scheduling.weekly_evaluation
    return [market_shift([volatility_shift(bars.head(history + 5 * week), weekly.drift_days, weekly.reference_days)
                          for bars in universe.values()]) for week in range(1, weeks + 1)]


def _weekly(model: Any, deployed: float, bars: Any, symbol: str, history: int, shifts: list[Any],
            settings: Any) -> list[Any]:
    """The weekly checks of one model over the sessions after its history; `shifts`: each week's market shift."""
    import polars as pl

    from models.base import LABEL
    from tasks.data.clean import clean
    from tasks.data.engineer import engineer
    from tasks.evaluation.drift import assess
    from tasks.evaluation.evaluate import backtest_settings
    from tasks.operations.schedule import degraded

    data, weekly = settings.data, settings.scheduling.weekly_evaluation
    market = settings.markets.of(symbol)
    frame = engineer.fn(clean.fn(bars, symbol, data.cleaning, market), symbol, data.features, data.split)
    warm_up = frame.height - frame.drop_nulls(list(model.features)).height  # the first rows lack a long window
    frame = frame.drop_nulls(list(model.features))
    horizon, checks = data.features.horizon, []
    for week in range(1, len(shifts) + 1):
        seen = frame.head(history - warm_up + 5 * week)  # the sessions up to that week's end; the newest labels unknown
        seen = seen.with_columns(pl.when(pl.int_range(pl.len()) < seen.height - horizon).then(pl.col(LABEL))
                                 .otherwise(None).alias(LABEL))
        assessment = assess(model, seen, symbol, "catboost", 1, "", weekly.window_days, weekly.drift_days,
                            weekly.reference_days, backtest_settings(settings.evaluation, market),
                            settings.model_selection.weights)
        checks.append(degraded.fn(assessment, deployed, settings.models.retraining.performance_threshold,
                                  weekly.volatility_bound, shifts[week - 1], weekly.market_volatility_bound))
    return checks


def _count(tally: Tally, checks: list[Any], threshold: float, break_week: int | None) -> None:
    first = retrained = None
    for week, check in enumerate(checks, start=1):
        share = check.score / check.deployment_score if check.deployment_score and check.deployment_score > 0 else 1
        if break_week is None or week <= break_week:
            tally.healthy_checks += 1
            tally.false_alarms += check.degraded
            tally.by_symbol += "its daily range" in check.reasons[1] and "beyond" in check.reasons[1]
            tally.by_market += "beyond" in check.reasons[2]
            tally.false_retrains += share < threshold
            tally.shares.append(share)
            continue
        if check.degraded and first is None:
            first = week - break_week
        if share < threshold and retrained is None:
            retrained = week - break_week
    if break_week is not None:
        tally.models += 1
        tally.flagged += first is not None and first <= DETECT_WEEKS
        tally.retrained += retrained is not None and retrained <= DETECT_WEEKS
        if first is not None:
            tally.weeks_to_flag.append(first)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.monitoring",
                                     description="Error rates of the weekly degradation check and the daily "
                                                 "retrain rule on a stationary market and two planted breaks.")
    parser.add_argument("--seeds", type=int, default=20, help="markets per kind (default 20)")
    parser.add_argument("--symbols", default="VCB,VIC,VHM", help="symbols whose model is watched (default VCB,VIC,VHM)")
    parser.add_argument("--history", type=int, default=1000, help="sessions the model is built on (default 1000)")
    parser.add_argument("--weeks", type=int, default=52, help="weekly evaluations after deployment (default 52)")
    parser.add_argument("--break-week", type=int, default=26, help="week the broken markets change (default 26)")
    parser.add_argument("--universe", default="VN30", help="the universe whose median daily range is the market's "
                                                           "(default VN30)")
    args = parser.parse_args(argv)
    if not 0 < args.break_week < args.weeks:
        parser.error(f"--break-week must be between 1 and --weeks - 1, got {args.break_week}")
    from settings import load_settings

    settings = load_settings()
    weekly = settings.scheduling.weekly_evaluation
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    universe = list(dict.fromkeys([*symbols, *(settings.data.universe_symbols(args.universe) or ())]))
    days, break_day = args.history + 5 * args.weeks, args.history + 5 * args.break_week
    print(f"benchmarks.monitoring: {args.seeds} seeds x {len(symbols)} symbols, {args.history} sessions of history, "
          f"{args.weeks} weekly checks, break at week {args.break_week}; window_days {weekly.window_days}, "
          f"performance_threshold {settings.models.retraining.performance_threshold:g}, drift_days "
          f"{weekly.drift_days} vs reference_days {weekly.reference_days}, volatility_bound "
          f"{weekly.volatility_bound:g}, market_volatility_bound {weekly.market_volatility_bound:g} over "
          f"{len(universe)} symbols", flush=True)
    tallies = {kind: Tally() for kind in MARKETS}
    started = time.perf_counter()
    for seed in range(args.seeds):
        stationary = _market(universe, days, seed, "stationary", break_day)
        deployed = _deployed(symbols, {s: stationary[s].head(args.history) for s in symbols}, settings)
        for kind in MARKETS:
            bars = stationary if kind == "stationary" else _market(universe, days, seed, kind, break_day)
            market = _market_shifts(bars, args.history, args.weeks, settings)
            for symbol in symbols:
                model, score = deployed[symbol]
                checks = _weekly(model, score, bars[symbol], symbol, args.history, market, settings)
                _count(tallies[kind], checks, settings.models.retraining.performance_threshold,
                       None if kind == "stationary" else args.break_week)
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    for kind, tally in tallies.items():
        print(tally.line(kind, kind != "stationary"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
