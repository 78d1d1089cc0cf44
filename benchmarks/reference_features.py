"""A plain pandas implementation of tasks/features.py: the independent check and the speed baseline.

Written for clarity, not speed, and straight from the qlib formulas: one symbol at a time, pandas
rolling windows, the OLS terms from running sums of x * y with x = 1..d, arg-max through
`rolling.apply`, and every sum of gains and losses taken separately.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api.typing import Rolling

from settings import FeatureSettings

__all__ = ["reference_features"]

EPS = 1e-12


def _finite(series: pd.Series) -> pd.Series:
    return series.where(np.isfinite(series))


def _roll(d: int, series: pd.Series) -> Rolling:
    return series.rolling(d, min_periods=d)


def _greater(*series: pd.Series) -> pd.Series:
    """Element-wise maximum that stays NaN where any input is NaN, like qlib's Greater."""
    return pd.Series(np.maximum.reduce([x.to_numpy() for x in series]), index=series[0].index)


def _less(*series: pd.Series) -> pd.Series:
    return pd.Series(np.minimum.reduce([x.to_numpy() for x in series]), index=series[0].index)


def _positive(series: pd.Series) -> pd.Series:
    return series.clip(lower=0)


def _log(series: pd.Series) -> pd.Series:
    with np.errstate(divide="ignore", invalid="ignore"):  # -inf / NaN become null later
        return pd.Series(np.log(series.to_numpy(dtype=float)), index=series.index)


def _bars(o: pd.Series, h: pd.Series, low: pd.Series, c: pd.Series) -> dict[str, pd.Series]:
    top, bottom = _greater(o, c), _less(o, c)
    span = h - low + EPS
    return {
        "KMID": (c - o) / o, "KLEN": (h - low) / o, "KMID2": (c - o) / span,
        "KUP": (h - top) / o, "KUP2": (h - top) / span,
        "KLOW": (bottom - low) / o, "KLOW2": (bottom - low) / span,
        "KSFT": (2 * c - h - low) / o, "KSFT2": (2 * c - h - low) / span,
        "OPEN0": o / c, "HIGH0": h / c, "LOW0": low / c,
    }


def _ols(c: pd.Series, d: int) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Slope, R^2 and last residual of close regressed on x = 1..d, from running sums."""
    k = pd.Series(np.arange(len(c), dtype=float), index=c.index)
    sum_y = _roll(d, c).sum()
    sum_y2 = _roll(d, c * c).sum()
    # x = k - (t - d) inside the window ending at row t.
    sum_xy = _roll(d, k * c).sum() - (k - d) * sum_y
    sum_x, sum_x2 = d * (d + 1) / 2, d * (d + 1) * (2 * d + 1) / 6
    sxy = d * sum_xy - sum_x * sum_y
    sxx = d * sum_x2 - sum_x * sum_x
    syy = d * sum_y2 - sum_y * sum_y
    slope = sxy / sxx
    intercept = (sum_y - slope * sum_x) / d
    return slope, sxy * sxy / (sxx * syy), c - (slope * d + intercept)


def _changes(c: pd.Series, v: pd.Series) -> dict[str, pd.Series]:
    """Day-over-day series the rolling operators aggregate."""
    pc, pv = c.shift(1), v.shift(1)
    known = pc.notna() & c.notna()
    return {
        "up": (c > pc).astype(float).where(known), "down": (c < pc).astype(float).where(known),
        "gain": _positive(c - pc), "loss": _positive(pc - c), "move": (c - pc).abs(),
        "vgain": _positive(v - pv), "vloss": _positive(pv - v), "vmove": (v - pv).abs(),
        "logv": _finite(_log(v + 1)), "ret": _finite(c / pc), "logvr": _finite(_log((v + 1) / (pv + 1))),
        "wv": _finite((c / pc - 1).abs() * v),
    }


def _rolling(d: int, c: pd.Series, h: pd.Series, low: pd.Series, v: pd.Series,
             x: dict[str, pd.Series]) -> dict[str, pd.Series]:
    """The Alpha158 rolling operators over `d` rows; `x` holds the day-over-day series."""
    up, down, logv, ret, logvr, wv = x["up"], x["down"], x["logv"], x["ret"], x["logvr"], x["wv"]
    gain, loss = _roll(d, x["gain"]).sum(), _roll(d, x["loss"]).sum()
    vgain, vloss = _roll(d, x["vgain"]).sum(), _roll(d, x["vloss"]).sum()
    move, vmove = _roll(d, x["move"]).sum() + EPS, _roll(d, x["vmove"]).sum() + EPS
    slope, rsqr, resi = _ols(c, d)
    hmax, lmin = _roll(d, h).max(), _roll(d, low).min()
    imax = _roll(d, h).apply(lambda w: np.argmax(w) + 1, raw=True)
    imin = _roll(d, low).apply(lambda w: np.argmin(w) + 1, raw=True)
    return {
        f"ROC{d}": c.shift(d) / c, f"MA{d}": _roll(d, c).mean() / c, f"STD{d}": _roll(d, c).std() / c,
        f"BETA{d}": slope / c, f"RSQR{d}": rsqr, f"RESI{d}": resi / c,
        f"MAX{d}": hmax / c, f"MIN{d}": lmin / c,
        f"QTLU{d}": _roll(d, c).quantile(0.8) / c, f"QTLD{d}": _roll(d, c).quantile(0.2) / c,
        f"RANK{d}": _roll(d, c).rank(pct=True), f"RSV{d}": (c - lmin) / (hmax - lmin + EPS),
        f"IMAX{d}": imax / d, f"IMIN{d}": imin / d, f"IMXD{d}": (imax - imin) / d,
        f"CORR{d}": _roll(d, c).corr(logv), f"CORD{d}": _roll(d, ret).corr(logvr),
        f"CNTP{d}": _roll(d, up).mean(), f"CNTN{d}": _roll(d, down).mean(),
        f"CNTD{d}": _roll(d, up).mean() - _roll(d, down).mean(),
        f"SUMP{d}": gain / move, f"SUMN{d}": loss / move, f"SUMD{d}": (gain - loss) / move,
        f"VMA{d}": _log(_roll(d, v).mean() + 1) - _log(v + 1), f"VSTD{d}": _log(_roll(d, v).std() + 1) - _log(v + 1),
        f"WVMA{d}": _roll(d, wv).std() / (_roll(d, wv).mean() + EPS),
        f"VSUMP{d}": vgain / vmove, f"VSUMN{d}": vloss / vmove, f"VSUMD{d}": (vgain - vloss) / vmove,
    }


def _technical(c: pd.Series, h: pd.Series, low: pd.Series, cfg: FeatureSettings) -> dict[str, pd.Series]:
    """RSI, MACD, Bollinger %B and ATR."""
    # pandas carries an average through a missing input; the engine leaves that row null.
    def wilder(s: pd.Series, n: int) -> pd.Series:
        return s.ewm(alpha=1 / n, adjust=False, min_periods=n).mean().where(s.notna())

    def ema(s: pd.Series, span: int) -> pd.Series:
        return s.ewm(span=span, adjust=False, min_periods=span).mean().where(s.notna())

    pc = c.shift(1)
    avg_gain, avg_loss = wilder(_positive(c - pc), cfg.rsi_period), wilder(_positive(pc - c), cfg.rsi_period)
    macd = ema(c, cfg.macd_fast) - ema(c, cfg.macd_slow)
    signal = ema(macd, cfg.macd_signal)
    n, k = cfg.bollinger_window, cfg.bollinger_k
    mid, sd = _roll(n, c).mean(), _roll(n, c).std(ddof=0)
    true_range = _greater(h - low, (h - pc).abs(), (low - pc).abs())
    return {
        f"RSI{cfg.rsi_period}": avg_gain / (avg_gain + avg_loss),
        "MACD": macd / c, "MACDSIG": signal / c, "MACDHIST": (macd - signal) / c,
        f"BBP{n}": (c - (mid - k * sd)) / (2 * k * sd),
        f"ATR{cfg.atr_period}": wilder(true_range, cfg.atr_period) / c,
    }


def _one_symbol(g: pd.DataFrame, cfg: FeatureSettings) -> pd.DataFrame:
    o, h, low, c, v = (_finite(g[name].astype(float)) for name in ("open", "high", "low", "close", "volume"))
    out = _bars(o, h, low, c)
    changes = _changes(c, v)
    for d in cfg.windows:
        out |= _rolling(d, c, h, low, v, changes)
    out |= _technical(c, h, low, cfg)
    out["label"] = _log(c.shift(-cfg.horizon) / c)
    return pd.DataFrame(out, index=g.index)


def reference_features(prices: pd.DataFrame, cfg: FeatureSettings) -> pd.DataFrame:
    """The input columns plus every feature and `label`, sorted by (symbol,) date, index reset."""
    multi = "symbol" in prices.columns
    frame = prices.sort_values(["symbol", "date"] if multi else ["date"], kind="stable")
    groups = [g for _, g in frame.groupby("symbol", sort=False)] if multi else [frame]
    features = pd.concat([_one_symbol(g, cfg) for g in groups])
    features = features.where(np.isfinite(features))  # inf / NaN become null
    return pd.concat([frame, features], axis=1).reset_index(drop=True)
