"""Every feature and the label of docs/features.md in plain pandas and numpy: the independent check of
tasks/data/features.py and the speed baseline it is measured against.

Each column is computed from its written definition, one symbol at a time and by the most direct means:
pandas rolling windows, a least-squares line fitted to every window, positions read off every window,
sums of gains and of losses taken one by one. It shares no code with the engine it checks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api.typing import Rolling

from settings import FeatureSettings

__all__ = ["reference_features"]

EPS = 1e-12
"""ε of docs/features.md."""


def _present(series: pd.Series) -> pd.Series:
    """Non-finite values (inf, NaN) as missing."""
    return series.where(np.isfinite(series))


def _last(d: int, series: pd.Series) -> Rolling:
    """Windows of today and the d - 1 rows before; missing while any of them is."""
    return series.rolling(d, min_periods=d)


def _each_window(series: pd.Series, d: int) -> np.ndarray:
    """Row t holds the d values ending at t, oldest first; all NaN for the first d - 1 rows."""
    values = series.to_numpy(dtype=float)
    out = np.full((values.size, d), np.nan)
    if values.size >= d:
        out[d - 1:] = np.lib.stride_tricks.sliding_window_view(values, d)
    return out


def _ln(series: pd.Series) -> pd.Series:
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.Series(np.log(series.to_numpy(dtype=float)), index=series.index)


def _kbar_and_price(o: pd.Series, h: pd.Series, low: pd.Series, c: pd.Series) -> dict[str, pd.Series]:
    """KBAR and PRICE, from today's bar."""
    upper = pd.Series(np.maximum(o.to_numpy(), c.to_numpy()), index=o.index)  # max(o, c), missing if either is
    lower = pd.Series(np.minimum(o.to_numpy(), c.to_numpy()), index=o.index)
    body, length, shift = c - o, h - low, 2 * c - h - low
    return {
        "KMID": body / o,
        "KLEN": length / o,
        "KMID2": body / (length + EPS),
        "KUP": (h - upper) / o,
        "KUP2": (h - upper) / (length + EPS),
        "KLOW": (lower - low) / o,
        "KLOW2": (lower - low) / (length + EPS),
        "KSFT": shift / o,
        "KSFT2": shift / (length + EPS),
        "OPEN0": o / c,
        "HIGH0": h / c,
        "LOW0": low / c,
    }


def _line_fit(c: pd.Series, d: int) -> tuple[pd.Series, pd.Series, pd.Series]:
    """The OLS line through the last d closes at x = 1..d: its slope, R², and fitted value at x = d."""
    y = _each_window(c, d)
    x = np.arange(1, d + 1, dtype=float)
    y_mean = y.mean(axis=1)
    slope = ((x - x.mean()) * (y - y_mean[:, None])).sum(axis=1) / ((x - x.mean()) ** 2).sum()
    intercept = y_mean - slope * x.mean()
    fitted = intercept[:, None] + slope[:, None] * x
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1 - ((y - fitted) ** 2).sum(axis=1) / ((y - y_mean[:, None]) ** 2).sum(axis=1)
    return (pd.Series(slope, index=c.index), pd.Series(r2, index=c.index),
            pd.Series(fitted[:, -1], index=c.index))


def _position(series: pd.Series, d: int, pick: str) -> pd.Series:
    """1-based position (oldest row = 1) of the window's first maximum (`pick` "max") or minimum ("min")."""
    windows = _each_window(series, d)
    complete = ~np.isnan(windows).any(axis=1)
    found = np.argmax(windows, axis=1) if pick == "max" else np.argmin(windows, axis=1)
    return pd.Series(np.where(complete, found + 1.0, np.nan), index=series.index)


def _sums(d: int, change: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Over the last d rows: the sum of rises max(change, 0), of falls max(-change, 0) and of |change|."""
    return (_last(d, change.clip(lower=0)).sum(), _last(d, (-change).clip(lower=0)).sum(),
            _last(d, change.abs()).sum())


def _window_features(d: int, c: pd.Series, h: pd.Series, low: pd.Series, v: pd.Series) -> dict[str, pd.Series]:
    """The rolling families over the last d rows."""
    prev_c, prev_v = c.shift(1), v.shift(1)
    dc, dv = c - prev_c, v - prev_v
    both = c.notna() & prev_c.notna()
    rose, fell = (c > prev_c).astype(float).where(both), (c < prev_c).astype(float).where(both)
    log_volume = _present(_ln(v + 1))
    weighted_move = _present((c / prev_c - 1).abs() * v)
    slope, r2, fitted = _line_fit(c, d)
    highest, lowest = _last(d, h).max(), _last(d, low).min()
    at_max, at_min = _position(h, d, "max"), _position(low, d, "min")
    c_gains, c_losses, c_moves = _sums(d, dc)
    v_gains, v_losses, v_moves = _sums(d, dv)
    return {
        f"ROC{d}": c.shift(d) / c,
        f"MA{d}": _last(d, c).mean() / c,
        f"STD{d}": _last(d, c).std(ddof=1) / c,
        f"BETA{d}": slope / c,
        f"RSQR{d}": r2,
        f"RESI{d}": (c - fitted) / c,
        f"MAX{d}": highest / c,
        f"MIN{d}": lowest / c,
        f"QTLU{d}": _last(d, c).quantile(0.8, interpolation="linear") / c,
        f"QTLD{d}": _last(d, c).quantile(0.2, interpolation="linear") / c,
        f"RANK{d}": _last(d, c).rank(method="average", pct=True),
        f"RSV{d}": (c - lowest) / (highest - lowest + EPS),
        f"IMAX{d}": at_max / d,
        f"IMIN{d}": at_min / d,
        f"IMXD{d}": (at_max - at_min) / d,
        f"CORR{d}": _last(d, c).corr(log_volume),
        f"CORD{d}": _last(d, _present(c / prev_c)).corr(_present(_ln((v + 1) / (prev_v + 1)))),
        f"CNTP{d}": _last(d, rose).mean(),
        f"CNTN{d}": _last(d, fell).mean(),
        f"CNTD{d}": _last(d, rose).mean() - _last(d, fell).mean(),
        f"SUMP{d}": c_gains / (c_moves + EPS),
        f"SUMN{d}": c_losses / (c_moves + EPS),
        f"SUMD{d}": (c_gains - c_losses) / (c_moves + EPS),
        f"VMA{d}": _ln(_last(d, v).mean() + 1) - _ln(v + 1),
        f"VSTD{d}": _ln(_last(d, v).std(ddof=1) + 1) - _ln(v + 1),
        f"WVMA{d}": _last(d, weighted_move).std(ddof=1) / (_last(d, weighted_move).mean() + EPS),
        f"VSUMP{d}": v_gains / (v_moves + EPS),
        f"VSUMN{d}": v_losses / (v_moves + EPS),
        f"VSUMD{d}": (v_gains - v_losses) / (v_moves + EPS),
    }


def _ewm(series: pd.Series, *, min_rows: int, alpha: float | None = None, span: int | None = None) -> pd.Series:
    """Exponential average from the first value (adjust=False); missing where its input is, resuming after."""
    average = series.ewm(alpha=alpha, span=span, adjust=False, min_periods=min_rows).mean()
    return average.where(series.notna())


def _indicators(c: pd.Series, h: pd.Series, low: pd.Series, cfg: FeatureSettings) -> dict[str, pd.Series]:
    """RSI, MACD, Bollinger %B, ATR and the 1-day log return."""
    prev_c = c.shift(1)
    rsi_n, atr_n, n, k = cfg.rsi_period, cfg.atr_period, cfg.bollinger_window, cfg.bollinger_k
    up_avg = _ewm((c - prev_c).clip(lower=0), alpha=1 / rsi_n, min_rows=rsi_n)
    down_avg = _ewm((prev_c - c).clip(lower=0), alpha=1 / rsi_n, min_rows=rsi_n)
    line = (_ewm(c, span=cfg.macd_fast, min_rows=cfg.macd_fast)
            - _ewm(c, span=cfg.macd_slow, min_rows=cfg.macd_slow))
    signal = _ewm(line, span=cfg.macd_signal, min_rows=cfg.macd_signal)
    band_mid, band_sd = _last(n, c).mean(), _last(n, c).std(ddof=0)
    ranges = pd.concat([h - low, (h - prev_c).abs(), (low - prev_c).abs()], axis=1)
    true_range = ranges.max(axis=1, skipna=False)
    return {
        f"RSI{rsi_n}": up_avg / (up_avg + down_avg),
        "MACD": line / c,
        "MACDSIG": signal / c,
        "MACDHIST": (line - signal) / c,
        f"BBP{n}": (c - (band_mid - k * band_sd)) / (2 * k * band_sd),
        f"ATR{atr_n}": _ewm(true_range, alpha=1 / atr_n, min_rows=atr_n) / c,
        "RET1": _ln(c / prev_c),
    }


def _one_symbol(bars: pd.DataFrame, cfg: FeatureSettings) -> pd.DataFrame:
    o, h, low, c, v = (_present(bars[name].astype(float)) for name in ("open", "high", "low", "close", "volume"))
    columns = _kbar_and_price(o, h, low, c)
    for d in cfg.windows:
        columns |= _window_features(d, c, h, low, v)
    columns |= _indicators(c, h, low, cfg)
    columns["label"] = _ln(c.shift(-cfg.horizon) / c)
    return pd.DataFrame(columns, index=bars.index)


def reference_features(prices: pd.DataFrame, cfg: FeatureSettings) -> pd.DataFrame:
    """The input columns plus every feature and `label`, sorted by (symbol,) date, index reset."""
    multi = "symbol" in prices.columns
    frame = prices.sort_values(["symbol", "date"] if multi else ["date"], kind="stable")
    groups = [g for _, g in frame.groupby("symbol", sort=False)] if multi else [frame]
    features = pd.concat([_one_symbol(g, cfg) for g in groups])
    features = features.where(np.isfinite(features))  # any non-finite result is missing
    return pd.concat([frame, features], axis=1).reset_index(drop=True)
