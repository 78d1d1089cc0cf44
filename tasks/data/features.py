"""Alpha158-style price features and the forward-return label, as pure polars expressions.

Every feature at day t reads rows <= t of its own symbol only; the label reads closes after t.
Formulas and warm-up rules: docs/features.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from settings import FeatureSettings

__all__ = ["EPS", "KBAR_FEATURES", "LABEL", "PRICE_FEATURES", "ROLLING_FAMILIES", "SYMBOL",
           "compute_features", "feature_names"]

EPS = 1e-12
"""qlib's guard against a zero denominator."""
LABEL = "label"
SYMBOL = "symbol"
KBAR_FEATURES = ("KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2")
PRICE_FEATURES = ("OPEN0", "HIGH0", "LOW0")
ROLLING_FAMILIES = (
    "ROC", "MA", "STD", "BETA", "RSQR", "RESI", "MAX", "MIN", "QTLU", "QTLD", "RANK", "RSV",
    "IMAX", "IMIN", "IMXD", "CORR", "CORD", "CNTP", "CNTN", "CNTD", "SUMP", "SUMN", "SUMD",
    "VMA", "VSTD", "WVMA", "VSUMP", "VSUMN", "VSUMD",
)
_PRICES = ("open", "high", "low", "close", "volume")
_REQUIRED = ("date", *_PRICES)
_SUMMED = ("close", "volume", "move", "vmove", "wv")
_COUNTED = (*_SUMMED, "high", "low")

_Over = Callable[[pl.Expr], pl.Expr]


def feature_names(cfg: FeatureSettings) -> list[str]:
    """All feature columns `compute_features` adds, in output order (the label excluded)."""
    rolling = [f"{family}{d}" for family in ROLLING_FAMILIES for d in cfg.windows]
    technical = [f"RSI{cfg.rsi_period}", "MACD", "MACDSIG", "MACDHIST", f"BBP{cfg.bollinger_window}",
                 f"ATR{cfg.atr_period}", "RET1"]
    return [*KBAR_FEATURES, *PRICE_FEATURES, *rolling, *technical]


def _col(name: str, d: int | str = "") -> pl.Expr:
    """An internal working column (inputs, helpers and per-window statistics)."""
    return pl.col(f"__{name}{d}")


def _finite(expr: pl.Expr) -> pl.Expr:
    """The value where it is finite, else null (inf, NaN and null all become null)."""
    return pl.when(expr.is_finite()).then(expr)


def _strict(expr: pl.Expr, *parts: pl.Expr) -> pl.Expr:
    """`expr` where every one of `parts` is present (max/min_horizontal skip nulls; qlib does not)."""
    return pl.when(pl.all_horizontal(part.is_not_null() for part in parts)).then(expr)


def _validate(prices: pl.DataFrame, cfg: FeatureSettings) -> None:
    missing = [name for name in _REQUIRED if name not in prices.columns]
    if missing:
        raise ValueError(f"prices lack column(s) {missing}; expected at least {list(_REQUIRED)}")
    clash = sorted(set(prices.columns) & {*feature_names(cfg), LABEL})
    if clash:
        raise ValueError(f"prices already hold feature column(s) {clash}")


def _check_unique_days(frame: pl.DataFrame, multi: bool) -> None:
    # The frame is sorted, so a repeated day sits next to its twin.
    repeat = pl.col("date") == pl.col("date").shift(1)
    if multi:
        repeat = repeat & (pl.col(SYMBOL) == pl.col(SYMBOL).shift(1))
    if frame.select(repeat.any()).item():
        raise ValueError("prices hold more than one row for the same day" + (" and symbol" if multi else ""))


def _helpers() -> list[pl.Expr]:
    """Per-row building blocks; each reads at most the previous row of the same symbol."""
    h, low, c, v = (_col(n) for n in ("high", "low", "close", "volume"))
    pc, pv = _col("pclose"), _col("pvolume")
    dc = c - pc
    true_range = pl.max_horizontal(h - low, (h - pc).abs(), (low - pc).abs())
    return [
        (c > pc).cast(pl.Float64).alias("__up"),
        (c < pc).cast(pl.Float64).alias("__down"),
        dc.clip(lower_bound=0).alias("__gain"),
        (-dc).clip(lower_bound=0).alias("__loss"),
        dc.abs().alias("__move"),
        (v - pv).abs().alias("__vmove"),
        _finite((v + 1).log()).alias("__logv"),
        _finite(c / pc).alias("__ret"),
        # ln((v + 1) / (v[-1] + 1)), not qlib's ln(v / v[-1] + 1): finite after a day without volume.
        _finite(((v + 1) / (pv + 1)).log()).alias("__logvr"),
        _finite((c / pc - 1).abs() * v).alias("__wv"),
        _strict(true_range, h, low, pc).alias("__tr"),
    ]


def _running_totals(over: _Over) -> list[pl.Expr]:
    """Running sums per symbol, and running null counts, for exact window sums by subtraction."""
    return [
        *(over(_col(name).fill_null(0).cum_sum()).alias(f"__cs{name}") for name in _SUMMED),
        # Integer counts are exact whatever precedes them, so they may run across symbols.
        *(_col(name).is_null().cum_sum().alias(f"__nn{name}") for name in _COUNTED),
    ]


def _full(name: str, d: int) -> pl.Expr:
    """Whether the symbol's last `d` rows exist and hold no null of the column."""
    nulls = _col(f"nn{name}")
    return (_col("row") >= d - 1) & (nulls - nulls.shift(d).fill_null(0) == 0)


def _window_sum(name: str, d: int) -> pl.Expr:
    """Sum of a column's last `d` values within the symbol; null if fewer or any is null."""
    total, row = _col(f"cs{name}"), _col("row")
    before = pl.when(row >= d).then(total.shift(d)).otherwise(0.0)
    return pl.when(_full(name, d)).then(total - before)


def _shared_stats(cfg: FeatureSettings, over: _Over) -> list[pl.Expr]:
    """EWMs (each from the symbol's first row), Bollinger's mean and variance, the future close."""
    c, n = _col("close"), cfg.bollinger_window

    def wilder(expr: pl.Expr, period: int) -> pl.Expr:
        return over(expr.ewm_mean(alpha=1 / period, adjust=False, min_samples=period))

    def ema(span: int) -> pl.Expr:
        return c.ewm_mean(span=span, adjust=False, min_samples=span)

    return [
        wilder(_col("gain"), cfg.rsi_period).alias("__rsigain"),
        wilder(_col("loss"), cfg.rsi_period).alias("__rsiloss"),
        wilder(_col("tr"), cfg.atr_period).alias("__atr"),
        over(ema(cfg.macd_fast) - ema(cfg.macd_slow)).alias("__macd"),
        (_window_sum("close", n) / n).alias("__bmean"),
        over(c.rolling_var(n)).alias("__bvar"),
        over(c.shift(-cfg.horizon)).alias("__next"),
    ]


def _window_stats(d: int, over: _Over) -> list[pl.Expr]:
    """Rolling statistics over `d` rows, each null until the symbol has `d` rows (min_samples = d)."""
    h, low, c, v = (_col(n) for n in ("high", "low", "close", "volume"))
    row = _col("row")
    full = row >= d - 1
    # OLS of close on x = 1..d: slope = sum((x - mean x) * y) / sum((x - mean x)^2).
    weights = [x - (d + 1) / 2 for x in range(1, d + 1)]
    # Kernels whose value depends only on the window's own rows (picks, order statistics, dot
    # products, sums of small integers) run across all symbols at once and are masked where the
    # window would reach into the previous symbol: `over` costs more than such a kernel.
    local = {
        "mean": _window_sum("close", d) / d,
        # Weighted windows reject nulls: zeros stand in, and the mask drops those windows.
        "slope": pl.when(_full("close", d)).then(
            c.fill_null(0).rolling_sum(d, weights=weights) / (d * (d * d - 1) / 12)),
        "shift": pl.when(row >= d).then(c.shift(d)),
        "vshift": pl.when(row >= d).then(v.shift(d)),
        "hmax": pl.when(full).then(h.rolling_max(d)),
        "lmin": pl.when(full).then(low.rolling_min(d)),
        "qtlu": pl.when(full).then(c.rolling_quantile(0.8, "linear", d)),
        "qtld": pl.when(full).then(c.rolling_quantile(0.2, "linear", d)),
        "up": pl.when(full).then(_col("up").rolling_sum(d) / d),
        "down": pl.when(full).then(_col("down").rolling_sum(d) / d),
        "move": _window_sum("move", d),
        "vmove": _window_sum("vmove", d),
        "vmean": _window_sum("volume", d) / d,
        "wvmean": _window_sum("wv", d) / d,
    }
    # Rolling (co)variances carry rounding from earlier rows, so they stay within the symbol.
    # Correlations are cov / sqrt(var * var), as pl.rolling_corr computes them; var(close) is shared.
    per_symbol = {
        "var": c.rolling_var(d),
        "cov": pl.rolling_cov(c, _col("logv"), window_size=d),
        "logvvar": _col("logv").rolling_var(d),
        "covd": pl.rolling_cov(_col("ret"), _col("logvr"), window_size=d),
        "retvar": _col("ret").rolling_var(d),
        "logvrvar": _col("logvr").rolling_var(d),
        "vstd": v.rolling_std(d),
        "wvstd": _col("wv").rolling_std(d),
    }
    return [
        *(expr.alias(f"__{name}") for name, expr in local.items()),
        *(over(expr).alias(f"__{name}") for name, expr in per_symbol.items()),
    ]


def _lag_stats(close: np.ndarray, high: np.ndarray, low: np.ndarray,
               windows: Iterable[int]) -> list[pl.Series]:
    """Percentile rank of close, and 1-based positions of max high / min low, per trailing window.

    One vectorised pass per lag k serves every window d > k. Runs over the concatenated rows of all
    symbols: windows that cross a symbol boundary or hold a null are masked by the caller.
    """
    n, wanted = close.shape[0], set(windows)
    less, equal = np.zeros(n, np.int32), np.ones(n, np.int32)
    top, bottom = high.copy(), low.copy()
    top_lag, bottom_lag = np.zeros(n, np.int32), np.zeros(n, np.int32)
    out = []
    for k in range(1, max(wanted)):
        if k < n:
            past_close, now_close = close[:n - k], close[k:]
            less[k:] += past_close < now_close
            equal[k:] += past_close == now_close
            # ">=" / "<=" move to the older row on ties: qlib IdxMax / IdxMin take the first occurrence.
            past = high[:n - k]
            np.putmask(top_lag[k:], past >= top[k:], k)
            np.maximum(top[k:], past, out=top[k:])
            past = low[:n - k]
            np.putmask(bottom_lag[k:], past <= bottom[k:], k)
            np.minimum(bottom[k:], past, out=bottom[k:])
        d = k + 1
        if d in wanted:
            out += [
                pl.Series(f"__rank{d}", (less + (equal + 1) / 2) / d),
                pl.Series(f"__imax{d}", (d - top_lag).astype(np.float64)),
                pl.Series(f"__imin{d}", (d - bottom_lag).astype(np.float64)),
            ]
    return out


def _bar_features() -> dict[str, pl.Expr]:
    """KBAR and PRICE: today's bar alone."""
    o, h, low, c = (_col(n) for n in ("open", "high", "low", "close"))
    span = h - low + EPS
    top, bottom = _strict(pl.max_horizontal(o, c), o, c), _strict(pl.min_horizontal(o, c), o, c)
    return {
        "KMID": (c - o) / o, "KLEN": (h - low) / o, "KMID2": (c - o) / span,
        "KUP": (h - top) / o, "KUP2": (h - top) / span,
        "KLOW": (bottom - low) / o, "KLOW2": (bottom - low) / span,
        "KSFT": (2 * c - h - low) / o, "KSFT2": (2 * c - h - low) / span,
        "OPEN0": o / c, "HIGH0": h / c, "LOW0": low / c,
    }


def _window_features(d: int) -> dict[str, pl.Expr]:
    """The Alpha158 rolling operators over `d` rows, from that window's statistics."""
    c, v = _col("close"), _col("volume")
    mean, var, slope, hmax, lmin = (_col(n) for n in ("mean", "var", "slope", "hmax", "lmin"))
    up, down, move, vmove = _col("up"), _col("down"), _col("move"), _col("vmove")
    # sum(gain) - sum(loss) = sum(close_t - close_{t-1}) telescopes to close_t - close_{t-d}.
    net, vnet = c - _col("shift"), v - _col("vshift")
    vgain, vloss = (vmove + vnet) / 2, (vmove - vnet) / 2
    sxx = d * (d * d - 1) / 12
    return {
        f"ROC{d}": _col("shift") / c, f"MA{d}": mean / c, f"STD{d}": var.sqrt() / c,
        f"BETA{d}": slope / c,
        f"RSQR{d}": slope * slope * sxx / ((d - 1) * var),
        f"RESI{d}": (c - mean - slope * (d - 1) / 2) / c,
        f"MAX{d}": hmax / c, f"MIN{d}": lmin / c,
        f"QTLU{d}": _col("qtlu") / c, f"QTLD{d}": _col("qtld") / c,
        f"RSV{d}": (c - lmin) / (hmax - lmin + EPS),
        f"CORR{d}": _col("cov") / (var * _col("logvvar")).sqrt(),
        f"CORD{d}": _col("covd") / (_col("retvar") * _col("logvrvar")).sqrt(),
        f"CNTP{d}": up, f"CNTN{d}": down, f"CNTD{d}": up - down,
        f"SUMP{d}": (move + net) / 2 / (move + EPS),
        f"SUMN{d}": (move - net) / 2 / (move + EPS),
        f"SUMD{d}": net / (move + EPS),
        # On a log(1 + v) scale, not qlib's ratio to v + eps: a day without volume would give ~1e19.
        f"VMA{d}": (_col("vmean") + 1).log() - _col("logv"), f"VSTD{d}": (_col("vstd") + 1).log() - _col("logv"),
        f"WVMA{d}": _col("wvstd") / (_col("wvmean") + EPS),
        f"VSUMP{d}": vgain / (vmove + EPS),
        f"VSUMN{d}": vloss / (vmove + EPS),
        f"VSUMD{d}": (vgain - vloss) / (vmove + EPS),
    }


def _position_features(d: int) -> dict[str, pl.Expr]:
    """RANK, IMAX, IMIN and IMXD over `d` rows from the lag scan, masked to complete windows."""
    imax, imin = _col("imax", d), _col("imin", d)
    return {
        f"RANK{d}": pl.when(_full("close", d)).then(_col("rank", d)),
        f"IMAX{d}": pl.when(_full("high", d)).then(imax) / d,
        f"IMIN{d}": pl.when(_full("low", d)).then(imin) / d,
        f"IMXD{d}": pl.when(_full("high", d) & _full("low", d)).then(imax - imin) / d,
    }


def _technical_features(cfg: FeatureSettings, over: _Over) -> dict[str, pl.Expr]:
    """RSI, MACD, Bollinger %B, ATR and the 1-day log return from the shared statistics, and the label."""
    c, gain, loss, macd = _col("close"), _col("rsigain"), _col("rsiloss"), _col("macd")
    # The signal line's EWM starts on the first day the MACD line exists.
    signal = over(macd.ewm_mean(span=cfg.macd_signal, adjust=False, min_samples=cfg.macd_signal))
    n, k = cfg.bollinger_window, cfg.bollinger_k
    sd = (_col("bvar") * ((n - 1) / n)).sqrt()  # population sd, as Bollinger defines the bands
    return {
        f"RSI{cfg.rsi_period}": gain / (gain + loss),
        "MACD": macd / c,
        "MACDSIG": signal / c,
        "MACDHIST": (macd - signal) / c,
        f"BBP{n}": (c - (_col("bmean") - k * sd)) / (2 * k * sd),
        f"ATR{cfg.atr_period}": _col("atr") / c,
        "RET1": _col("ret").log(),
        LABEL: (_col("next") / c).log(),
    }


def _aliased(exprs: dict[str, pl.Expr]) -> list[pl.Expr]:
    return [expr.alias(name) for name, expr in exprs.items()]


def compute_features(prices: pl.DataFrame, cfg: FeatureSettings) -> pl.DataFrame:
    """Add every feature column and the label to a price frame (one symbol, or many with `symbol`).

    Args:
        prices: PRICE_SCHEMA rows; with a `symbol` column every symbol is computed on its own.
        cfg: windows and indicator periods.

    Returns:
        A new frame sorted by (symbol,) date: the input columns, `feature_names(cfg)` (Float64,
        null during warm-up and where not finite), then `label` = ln(close[t+h] / close[t]).
    """
    _validate(prices, cfg)
    multi = SYMBOL in prices.columns
    frame = prices.sort([SYMBOL, "date"] if multi else "date", maintain_order=True)
    _check_unique_days(frame, multi)

    def over(expr: pl.Expr) -> pl.Expr:
        return expr.over(SYMBOL) if multi else expr

    work = frame.select(
        *([pl.col(SYMBOL)] if multi else []),
        *(_finite(pl.col(name).cast(pl.Float64)).alias(f"__{name}") for name in _PRICES),
    )
    work = work.with_columns(
        over(pl.int_range(pl.len(), dtype=pl.Int32)).alias("__row"),
        *(over(_col(name).shift(1)).alias(f"__p{name}") for name in ("close", "volume")),
    )
    work = work.with_columns(*_helpers())
    work = work.with_columns(*_running_totals(over))
    # numpy releases the GIL, so the lag scan runs while polars computes the rolling kernels.
    with ThreadPoolExecutor(max_workers=1) as pool:
        close, high, low = (work[f"__{name}"].to_numpy() for name in ("close", "high", "low"))
        lagged = pool.submit(_lag_stats, close, high, low, cfg.windows)
        parts = [
            work.select(_aliased(_bar_features())),
            work.with_columns(*_shared_stats(cfg, over)).select(_aliased(_technical_features(cfg, over))),
        ]
        # One window at a time, so that each window's statistics are freed before the next.
        for d in cfg.windows:
            parts.append(work.with_columns(*_window_stats(d, over)).select(_aliased(_window_features(d))))
        positions = {name: expr for d in cfg.windows for name, expr in _position_features(d).items()}
        parts.append(work.with_columns(*lagged.result()).select(_aliased(positions)))
    names = [*feature_names(cfg), LABEL]
    out = pl.concat(parts, how="horizontal").select(names)
    # A column's sum is finite unless it holds inf or NaN (or overflows: then a needless guard).
    # Summing is far cheaper than rewriting every column, and most columns need no guard.
    sums = out.select(pl.col(names).sum()).row(0)
    out = out.with_columns(_finite(pl.col(name)).alias(name) for name, total in zip(names, sums, strict=True)
                           if not math.isfinite(total))
    return pl.concat([frame, out], how="horizontal")
