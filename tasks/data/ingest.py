"""Price sources for the store: a synthetic HOSE-like market, and CSV / Parquet price files."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import cast

import numpy as np
import polars as pl

from schemas import validate_symbol
from stores.base import PRICE_COLUMNS, PRICE_SCHEMA

__all__ = ["DEMO_PULL", "DEMO_REVERSAL", "DEMO_REVERSAL_IC", "PLANTED_EDGES", "SUPPORTED_SUFFIXES", "Edge",
           "IncomingBars", "MarketBreak", "check_incoming", "planted_effect", "read_price_file", "synthetic_market",
           "window_warning"]

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")

# Typical price levels in thousands of VND; other symbols get a level derived from their name.
_LEVELS = {
    "VCB": 90.0, "VIC": 45.0, "VHM": 40.0, "FPT": 120.0, "HPG": 27.0, "VNM": 68.0, "MWG": 60.0,
    "TCB": 24.0, "MBB": 22.0, "ACB": 25.0, "BID": 45.0, "CTG": 33.0, "GAS": 70.0, "MSN": 75.0,
    "SSI": 30.0, "VPB": 19.0, "VRE": 22.0, "PLX": 38.0, "SAB": 58.0, "POW": 12.0,
}
# Market regimes: daily drift and volatility multiplier; rows of _TRANSITIONS are "from" states.
_DRIFT = np.array([0.0009, 0.0, -0.0012])  # bull, sideways, bear
_VOL_SCALE = np.array([0.8, 1.0, 1.6])
_TRANSITIONS = np.array([
    [0.985, 0.012, 0.003],
    [0.010, 0.980, 0.010],
    [0.004, 0.016, 0.980],
])
_LIMIT = 0.07  # HOSE daily price band around the previous close
_T_DF = 5  # Student-t shocks: fat tails like real daily returns
_MEAN_REVERSION = 0.003  # pulls log price toward the symbol's level so long histories stay plausible

DEMO_REVERSAL = 0.08
"""The demo market's planted 1-day reversal: tomorrow's idiosyncratic return loads -DEMO_REVERSAL on today's. Sized
so that the universe gate finds it at the demo's shape (30 symbols x 1500 days) in at least 90 % of seeds
(docs/synthetic_market.md); real markets' daily reversal is weaker."""
DEMO_REVERSAL_IC = 0.081
"""Mean daily cross-sectional Spearman IC of -ln(close[t]/close[t-1]) against ln(close[t+1]/close[t]) at
DEMO_REVERSAL without other structure: the average over seeds 0-7 of 50 symbols x 1500 days
(benchmarks/planted_edge.py)."""


@dataclass(frozen=True)
class Edge:
    """What a demo market holds to be found."""

    reversal: float
    """the planted 1-day reversal of idiosyncratic returns (0: none)."""
    structure: bool
    """whether the market keeps its own predictable structure (betas under regime drifts, a level pull)."""
    pull: float = 0.0
    """a planted daily pull of each symbol's log price toward its level (0: none; the market's own when
    `structure`)."""


DEMO_PULL = 0.02
"""The demo market's planted pull toward each symbol's price level: a gap closes by 2 % a day (half-life about 35
sessions). Slow enough to trade after HOSE costs, which the 1-day reversal alone is not (docs/synthetic_market.md)."""

PLANTED_EDGES: Mapping[str, Edge] = {
    "reversion": Edge(DEMO_REVERSAL, structure=False, pull=DEMO_PULL),
    "reversal": Edge(DEMO_REVERSAL, structure=False),
    "null": Edge(0.0, structure=False),
    "none": Edge(0.0, structure=True),
}
"""The demo command's --edge choices: `reversion` plants the 1-day reversal and a slow pull toward each symbol's
level in a market with nothing else to find; `reversal` the reversal alone; `null` has nothing to find at all;
`none` keeps the market's own structure without the planted effects."""


@dataclass(frozen=True)
class MarketBreak:
    """A change of the market's process from session `day` on (0-based, counted from the first bar)."""

    day: int
    volatility: float = 1.0
    """every return's volatility (market and idiosyncratic) times this from `day` on."""
    reversal_flips: bool = False
    """from `day` on the planted reversal turns into momentum: each day extends the day before's move."""


def _stable_int(text: str) -> int:
    """A hash of `text` that is the same in every process (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _tick(price: float) -> float:
    return 0.05 if price < 50 else 0.1


def _to_tick(price: float, mode: str) -> float:
    """`price` on the HOSE tick grid, rounded "nearest", "down" or "up"."""
    tick = _tick(price)
    steps = price / tick
    # The epsilon keeps prices already on the grid (49.95 / 0.05 = 998.999...) where they are.
    k = {"nearest": round(steps), "down": math.floor(steps + 1e-9), "up": math.ceil(steps - 1e-9)}[mode]
    return round(k * tick, 2)


def _in_band(price: float, mode: str, band: tuple[float, float]) -> float:
    """`price` on the tick grid, held inside the day's (floor, ceiling) price band."""
    return min(max(_to_tick(price, mode), band[0]), band[1])


def _garch(shocks: np.ndarray, long_run_vol: float, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """GARCH(1,1) innovations and their conditional volatility, driven by unit-variance `shocks`."""
    omega = long_run_vol**2 * (1 - alpha - beta)
    eps, sigma = np.empty_like(shocks), np.empty_like(shocks)
    variance = long_run_vol**2
    for t, z in enumerate(shocks):
        sigma[t] = math.sqrt(variance)
        eps[t] = sigma[t] * z
        variance = omega + alpha * eps[t] ** 2 + beta * variance
    return eps, sigma


def _reversing(eps: np.ndarray, reversal: float, flip_from: int | None = None) -> np.ndarray:
    """x[t] = eps[t] - reversal * x[t-1]: each day gives back `reversal` of the day before's move; from day
    `flip_from` on each day extends it instead (x[t] = eps[t] + reversal * x[t-1])."""
    out = np.empty_like(eps)
    previous = 0.0
    for t, e in enumerate(eps):
        sign = 1.0 if flip_from is not None and t >= flip_from else -1.0
        previous = out[t] = e + sign * reversal * previous
    return out


def _student_t(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.standard_t(_T_DF, size) / math.sqrt(_T_DF / (_T_DF - 2))


def _market(seed: int, days: int, structure: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shared market drift, return innovations and volatility (all symbols see the same regimes).

    Without `structure` the regimes scale the volatility only: the market's drift is 0 in every regime."""
    rng = np.random.default_rng([seed, _stable_int("market")])
    regimes = np.empty(days, dtype=np.int64)
    regimes[0] = 1
    uniforms = rng.random(days)
    cumulative = _TRANSITIONS.cumsum(axis=1)
    for t in range(1, days):
        regimes[t] = min(int(np.searchsorted(cumulative[regimes[t - 1]], uniforms[t])), 2)
    eps, sigma = _garch(_student_t(rng, days), long_run_vol=0.011, alpha=0.10, beta=0.88)
    scale = _VOL_SCALE[regimes]
    drift = _DRIFT[regimes] if structure else np.zeros(days)
    return drift, eps * scale, sigma * scale


def _symbol_bars(symbol: str, seed: int, market: tuple[np.ndarray, np.ndarray, np.ndarray],
                 reversal: float, structure: bool, pull: float = 0.0,
                 breaks: MarketBreak | None = None) -> dict[str, list[float]]:
    drift, market_eps, market_sigma = market
    days = len(drift)
    rng = np.random.default_rng([seed, _stable_int(symbol)])
    key = _stable_int(symbol)
    level = _LEVELS.get(symbol, 10.0 + (key % 9000) / 100.0)
    traded_value = (80 + (key >> 32) % 320) * 1e9  # VND per day
    if structure:  # betas under regime drifts, GARCH idiosyncratic volatility, a pull toward the level
        beta, kappa = 0.7 + (key >> 16) % 600 / 1000.0, _MEAN_REVERSION
        idio_eps, idio_sigma = _garch(_student_t(rng, days), long_run_vol=0.012, alpha=0.08, beta=0.90)
    else:  # nothing to predict: one beta, i.i.d. idiosyncratic returns, no pull
        beta, kappa = 1.0, 0.0
        idio_sigma = np.full(days, 0.012)
        idio_eps = idio_sigma * _student_t(rng, days)
    if breaks is not None:
        idio_eps, idio_sigma = idio_eps.copy(), idio_sigma.copy()
        idio_eps[breaks.day:] *= breaks.volatility
        idio_sigma[breaks.day:] *= breaks.volatility
    if reversal:
        idio_eps = _reversing(idio_eps, reversal, breaks.day if breaks and breaks.reversal_flips else None)
    kappa = pull or kappa
    sigma = np.hypot(beta * market_sigma, idio_sigma)
    returns = beta * (drift + market_eps) + idio_eps
    gap_noise, high_noise, low_noise = rng.normal(size=days), *np.abs(rng.normal(size=(2, days)))
    volume_noise = rng.normal(size=days)

    bars: dict[str, list[float]] = {name: [] for name in PRICE_COLUMNS[1:]}
    prev = _to_tick(level * math.exp(rng.normal(0, 0.1)), "nearest")
    for t in range(days):
        band = (_to_tick(prev * (1 - _LIMIT), "up"), _to_tick(prev * (1 + _LIMIT), "down"))
        pull = kappa * math.log(prev / level)
        close = _in_band(prev * math.exp(returns[t] - pull), "nearest", band)
        # The open carries part of the day's news plus overnight noise.
        open_ = _in_band(prev * math.exp(0.3 * returns[t] + 0.3 * sigma[t] * gap_noise[t]), "nearest", band)
        high = _in_band(max(open_, close) * math.exp(0.5 * sigma[t] * high_noise[t]), "up", band)
        low = _in_band(min(open_, close) * math.exp(-0.5 * sigma[t] * low_noise[t]), "down", band)
        # Lognormal volume that swells on big moves, in whole board lots of 100 shares.
        move = abs(math.log(close / prev))
        shares = traded_value / (close * 1000) * math.exp(0.35 * volume_noise[t] + 12 * move)
        for name, value in zip(bars, (open_, high, low, close, max(1, round(shares / 100)) * 100.0), strict=True):
            bars[name].append(value)
        prev = close
    return bars


def synthetic_market(symbols: Sequence[str], days: int, seed: int, end: date, *,
                     reversal: float = 0.0, structure: bool = True, pull: float = 0.0,
                     breaks: MarketBreak | None = None) -> dict[str, pl.DataFrame]:
    """A deterministic synthetic HOSE-like market: `days` business days ending at `end`, per symbol.

    Regimes (bull / sideways / bear) follow a Markov chain shared by all symbols; returns have GARCH(1,1)
    volatility clustering and fat tails; closes move at most 7% a day and sit on the HOSE tick grid.
    A symbol's bars depend only on (symbol, days, seed, end, reversal, structure, pull), not on the other symbols
    asked for.

    Args:
        reversal: the planted short-horizon reversal, 0 (none) to below 1: each symbol's idiosyncratic
            return follows x[t] = e[t] - reversal * x[t-1] (docs/synthetic_market.md).
        structure: the market's own predictable structure: betas of 0.7 to 1.3 under the regimes' drifts,
            GARCH idiosyncratic volatility and a slow pull toward each symbol's price level. False leaves
            nothing to predict but the planted effects: one beta, no drift, i.i.d. idiosyncratic returns.
        pull: a planted daily pull of each symbol's log price toward its level, 0 (none) to below 1; replaces
            the market's own (0.003) when `structure`.
        breaks: a change of the process from one session on (volatility, the reversal's sign); None keeps
            the process as it is, and the bars before the break are those without it.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if not 0.0 <= reversal < 1.0:
        raise ValueError(f"reversal must be in [0, 1), got {reversal}")
    if not 0.0 <= pull < 1.0:
        raise ValueError(f"pull must be in [0, 1), got {pull}")
    names = [validate_symbol(s) for s in symbols]
    last = np.busday_offset(np.datetime64(end, "D"), 0, roll="backward")
    dates = pl.Series("date", np.busday_offset(last, np.arange(-(days - 1), 1)), dtype=pl.Date)
    market = _market(seed, days, structure)
    if breaks is not None:
        if not 0 <= breaks.day < days or breaks.volatility <= 0:
            raise ValueError(f"a break needs 0 <= day < {days} and volatility > 0, got {breaks}")
        scale = np.where(np.arange(days) >= breaks.day, breaks.volatility, 1.0)
        market = (market[0], market[1] * scale, market[2] * scale)
    frames = {}
    for symbol in dict.fromkeys(names):
        bars = _symbol_bars(symbol, seed, market, reversal, structure, pull, breaks)
        frames[symbol] = pl.DataFrame({"date": dates, **bars}, schema=PRICE_SCHEMA)
    return frames


def planted_effect(reversal: float, structure: bool = True, pull: float = 0.0) -> str:
    """The planted effect, and the market's own structure, in words (the price store's source detail, the report)."""
    effects = []
    if reversal:
        strength = f", mean daily IC about {DEMO_REVERSAL_IC}" if reversal == DEMO_REVERSAL and not structure \
            and not pull else ""
        effects.append(f"1-day reversal of idiosyncratic returns (reversal {reversal}{strength})")
    if pull:
        effects.append(f"a pull of each price toward its level ({pull} a day, half-life "
                       f"{math.log(2) / pull:.0f} sessions)")
    effect = f"planted effect: {' and '.join(effects) or 'none'}"
    if structure:
        return f"{effect}; the market's own structure kept (betas under regime drifts, a level pull)"
    return (f"{effect}; nothing else to predict (one beta, no drift, i.i.d. idiosyncratic returns"
            f"{'' if pull else ', no level pull'})")


_ALIASES = {"datetime": "date", "timestamp": "date", "time": "date", "trading_date": "date",
            "ticker": "symbol", "vol": "volume"}


def _parse_dates(column: pl.Series, path: Path) -> pl.Series:
    if column.dtype == pl.Date:
        return column
    if column.dtype.is_temporal():
        return column.dt.date()
    if column.dtype.is_integer():  # 20240102
        column = column.cast(pl.String)
    if column.dtype != pl.String:
        raise ValueError(f"{path}: date column has type {column.dtype}, expected dates or date strings")
    text = column.str.strip_chars()
    candidates = [text.str.to_date(strict=False), text.str.to_datetime(strict=False).dt.date(),
                  text.str.to_date("%Y%m%d", strict=False)]
    parsed = min(candidates, key=lambda s: s.null_count())
    bad = text.filter(parsed.is_null() & text.is_not_null())
    if bad.len():
        raise ValueError(f"{path}: {bad.len()} date(s) could not be parsed, e.g. {bad[0]!r}")
    return parsed


def read_price_file(path: Path, symbol: str | None = None) -> pl.DataFrame:
    """Daily bars from a .csv or .parquet file, as PRICE_SCHEMA sorted by date.

    Column names match case-insensitively; the date may be a column, a pandas index named Date, or the
    unnamed first column that pandas writes for its index.
    If the file has a symbol (or ticker) column, `symbol` selects its rows.

    Raises:
        ValueError: unsupported extension, a missing column, unparseable dates or non-numeric prices.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"unsupported price file {path}: expected one of {', '.join(SUPPORTED_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"price file not found: {path}")
    try:
        # CSV as text: numbers and dates are then parsed once, with errors that name the column.
        raw = pl.read_csv(path, infer_schema=False) if suffix == ".csv" else pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc

    names: dict[str, str] = {}
    for original in raw.columns:
        key = original.strip().lower().replace(" ", "_")
        key = _ALIASES.get(key, key)
        if key == "__index_level_0__" and raw[original].dtype.is_temporal():
            key = "date"  # an unnamed pandas DatetimeIndex
        names.setdefault(key, original)
    if "date" not in names and raw.columns and not raw.columns[0].strip():
        names["date"] = raw.columns[0]  # the unnamed index column pandas' DataFrame.to_csv() writes first
    missing = [name for name in PRICE_COLUMNS if name not in names]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise ValueError(f"{path} has no {', '.join(missing)} column{plural} "
                         f"(columns found: {', '.join(raw.columns) or 'none'})")

    if "symbol" in names:
        tickers = raw[names["symbol"]].cast(pl.String).str.strip_chars().str.to_uppercase()
        found = sorted(tickers.drop_nulls().unique().to_list())
        if symbol is not None:
            raw = raw.filter(tickers == symbol)
            if raw.is_empty():
                raise ValueError(f"{path} has no rows for symbol {symbol!r} (symbols found: {', '.join(found[:20])})")
        elif len(found) > 1:
            raise ValueError(f"{path} holds several symbols ({', '.join(found[:20])}); choose one")

    columns = [_parse_dates(raw[names["date"]], path).alias("date")]
    for name in PRICE_COLUMNS[1:]:
        try:
            values = raw[names[name]]
            values = values.str.strip_chars() if values.dtype == pl.String else values
            columns.append(values.cast(pl.Float64).alias(name))
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"{path}: column {names[name]!r} has non-numeric values") from exc
    bars = pl.DataFrame(columns).sort("date", maintain_order=True)
    if bars.is_empty():
        raise ValueError(f"{path} holds no price rows" + (f" for {symbol}" if symbol and "symbol" in names else ""))
    return bars


@dataclass(frozen=True)
class IncomingBars:
    """Bars about to be stored, one per date, and what was said about them."""

    bars: pl.DataFrame
    duplicates: int
    """rows dropped because another row had the same date (the last row of each date is kept)."""
    first_duplicate: date | None


def check_incoming(bars: pl.DataFrame, symbol: str, today: date) -> IncomingBars:
    """Refuse bars dated after `today` (the exchange's date) or none at all; keep the last row of each date.

    Raises:
        ValueError: no bars, or a bar dated in the future (the message names the first such date).
    """
    if bars.is_empty():
        raise ValueError(f"no bars to store for {symbol}")
    future = bars.filter(pl.col("date") > today)["date"]
    if future.len():
        raise ValueError(f"{symbol}: {future.len()} bar(s) dated after today ({today} at the exchange), the first "
                         f"on {cast(date, future.min())}; refusing them, as a future watermark would hide a stale feed")
    repeated = bars.filter(pl.col("date").is_duplicated())["date"]
    unique = bars.unique("date", keep="last", maintain_order=True).sort("date")
    return IncomingBars(unique, bars.height - unique.height, cast(date, repeated.min()) if repeated.len() else None)


def window_warning(symbol: str, stored: pl.Series, start: date, end: date | None) -> str | None:
    """A warning when stored bar dates lie outside the configured window data.start_date..data.end_date."""
    if not stored.len():
        return None
    first, last = cast(date, stored.min()), cast(date, stored.max())
    outside = int(((stored < start) | ((stored > end) if end else False)).sum())
    if not outside:
        return None
    window = f"data.start_date..data.end_date = {start}..{end or 'newest'}"
    if outside == stored.len():
        return (f"none of {symbol}'s {stored.len()} stored bars ({first}..{last}) lies in {window}: the pipeline "
                f"will see no rows of it; set data.start_date (e.g. STOCK_AI_DATA__START_DATE={first})")
    return f"{outside} of {symbol}'s {stored.len()} stored bars ({first}..{last}) lie outside {window} and are not used"
