"""Typed pipeline settings: YAML file, then `STOCK_AI_*` environment variables, then explicit overrides.

Build one `Settings` at an entry point with `load_settings()` and hand each task only its section.
"""

from __future__ import annotations

import os
import re
import typing
import zoneinfo
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from schemas import validate_symbol
from settings_loader import ConfigError, describe_environment, describe_invalid, read_yaml

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "MODEL_TYPES",
    "CleaningSettings",
    "ConfigError",
    "DataSettings",
    "DeploymentSettings",
    "ExecutionSettings",
    "FeatureSettings",
    "Market",
    "MarketSettings",
    "ModelsSettings",
    "MongoSettings",
    "MonitoringSettings",
    "OptimizationSettings",
    "SelectionSettings",
    "Settings",
    "SplitSettings",
    "load_settings",
]

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "config" / "pipeline_config.yml"
ModelType = Literal["arima", "lstm", "transformer", "catboost"]
MODEL_TYPES: tuple[ModelType, ...] = typing.get_args(ModelType)

_yaml_values: ContextVar[dict[str, Any] | None] = ContextVar("_yaml_values", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MongoSettings(_Section):
    uri: SecretStr = SecretStr("mongodb://localhost:27017")
    database: str = "stock_ai"
    collection: str = "prices"
    timeout_ms: int = Field(5000, gt=0, description="server selection timeout per attempt")
    retries: int = Field(3, ge=1, description="connection attempts before giving up")
    backoff_seconds: float = Field(1.0, ge=0, description="first retry delay; doubles each attempt")
    max_wait_seconds: float = Field(30.0, gt=0, description="bound on all attempts of one operation together")

    @field_validator("uri")
    @classmethod
    def _usable_uri(cls, uri: SecretStr) -> SecretStr:
        """Scheme and ports checked here, so a typo names data.mongodb.uri (the password is never repeated)."""
        text = uri.get_secret_value()
        scheme, _, rest = text.partition("://")
        if scheme not in ("mongodb", "mongodb+srv") or not rest:
            raise ValueError("expected mongodb://host[:port][,host[:port]...][/database][?options] "
                             "or mongodb+srv://host")
        hosts = rest.rpartition("@")[2].split("/", 1)[0].split("?", 1)[0]
        for host in hosts.split(","):
            name, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
            if not colon:
                name = host
            if not name:
                raise ValueError(f"a host is empty in {hosts!r}")
            if colon and not (port.isdigit() and 1 <= int(port) <= 65535):
                raise ValueError(f"port {port!r} of host {name!r} is not a number from 1 to 65535")
        return uri


class SplitSettings(_Section):
    """The run's calendar (tasks/data/calendar.py): boundaries are dates every symbol of a run shares."""

    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    min_rows: int = Field(30, ge=1, description="fewest rows any split may have")
    embargo: int | None = Field(None, ge=1, description="sessions left out between train and val and between val "
                                "and test; None: features.horizon (fewer would let a label window cross a boundary)")
    val_start: date | None = Field(None, description="first validation date instead of the fractions (with test_start)")
    test_start: date | None = Field(None, description="first test date instead of the fractions (with val_start)")

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitSettings:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(
                f"fractions train+val+test must sum to 1, got "
                f"{self.train}+{self.val}+{self.test}={total:g}"
            )
        if (self.val_start is None) != (self.test_start is None):
            raise ValueError("give val_start and test_start together, or neither (the fractions then cut the dates)")
        if self.val_start is not None and self.test_start is not None and self.val_start >= self.test_start:
            raise ValueError(f"val_start ({self.val_start}) must be before test_start ({self.test_start})")
        return self


class FeatureSettings(_Section):
    windows: tuple[int, ...] = (5, 10, 20, 30, 60)
    horizon: int = Field(1, ge=1, description="label = forward log return over this many days")
    rsi_period: int = Field(14, ge=2)
    macd_fast: int = Field(12, ge=2)
    macd_slow: int = Field(26, ge=3)
    macd_signal: int = Field(9, ge=2)
    bollinger_window: int = Field(20, ge=2)
    bollinger_k: float = Field(2.0, gt=0)
    atr_period: int = Field(14, ge=2)

    @field_validator("windows")
    @classmethod
    def _windows_valid(cls, windows: tuple[int, ...]) -> tuple[int, ...]:
        if not windows or any(w < 2 for w in windows):
            raise ValueError(f"must be non-empty and each window >= 2, got {list(windows)}")
        return tuple(sorted(set(windows)))

    @property
    def warmup(self) -> int:
        """Rows before the first day on which every feature is defined."""
        return max(*self.windows, self.rsi_period, self.macd_slow + self.macd_signal,
                   self.bollinger_window, self.atr_period + 1)


class SelectionSettings(_Section):
    max_features: int = Field(60, ge=1)
    max_correlation: float = Field(0.95, gt=0, le=1, description="drop the later of two features above this |corr|")
    min_std: float = Field(1e-10, ge=0, description="drop features whose train std is at or below this")
    always_keep: tuple[str, ...] = Field(("RET1",), description="features kept ahead of the ranking unless null or "
                                         "constant: RET1 is what the pooled models' cross-sectional z-score reads "
                                         "a short-horizon reversal from, and one symbol's ranking is noise")


class CleaningSettings(_Section):
    max_fill_days: int = Field(3, ge=0, description="longest run of missing values forward-filled")
    jump_threshold: float = Field(0.3, gt=0, description="flag |log return| above this as an extreme jump")
    max_gap_sessions: int = Field(5, ge=0, description="report holes of more trading sessions than this "
                                  "between consecutive bars (markets.* decide the sessions)")


VN30: tuple[str, ...] = (
    "ACB", "BCM", "BID", "BVH", "CTG", "FPT", "GAS", "GVR", "HDB", "HPG", "LPB", "MBB", "MSN", "MWG", "PLX",
    "SAB", "SHB", "SSB", "SSI", "STB", "TCB", "TPB", "VCB", "VHM", "VIB", "VIC", "VJC", "VNM", "VPB", "VRE")
"""The 30 tickers of HOSE's VN30 index (composition of the first half of 2025; HOSE reviews it twice a year)."""


class DataSettings(_Section):
    source: Literal["parquet", "mongodb"] = "parquet"
    symbols: tuple[str, ...] = ("VCB", "VIC", "VHM")
    universe: str | None = Field(None, description="name of the universe (a key of `universes`) universe models are "
                                 "fitted on; None: the watch list itself")
    universes: dict[str, tuple[str, ...]] = Field(default_factory=lambda: {"VN30": VN30},
                                                  description="named symbol lists")
    start_date: date = date(2020, 1, 1)
    end_date: date | None = None
    prices_path: Path = Path("data/prices")
    feature_store_path: Path = Path("data/features")
    mongodb: MongoSettings = MongoSettings()
    split: SplitSettings = SplitSettings()
    features: FeatureSettings = FeatureSettings()
    selection: SelectionSettings = SelectionSettings()
    cleaning: CleaningSettings = CleaningSettings()

    @field_validator("symbols")
    @classmethod
    def _symbols_valid(cls, symbols: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_symbol(s) for s in symbols)

    @field_validator("universes")
    @classmethod
    def _universes_valid(cls, universes: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name, members in universes.items():
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$", name):
                raise ValueError(f"universe name {name!r}: letters, digits, _ and - only, at most 32")
            if len(set(members)) < 2:
                raise ValueError(f"universe {name} lists {len(set(members))} symbol(s); a universe needs 2 or more")
        return {name: tuple(dict.fromkeys(validate_symbol(s) for s in members)) for name, members in universes.items()}

    @model_validator(mode="after")
    def _dates_ordered(self) -> DataSettings:
        if self.end_date is not None and self.start_date > self.end_date:
            raise ValueError(
                f"start_date ({self.start_date}) is after end_date ({self.end_date})"
            )
        if self.split.embargo is not None and self.split.embargo < self.features.horizon:
            raise ValueError(f"split.embargo ({self.split.embargo}) is shorter than features.horizon "
                             f"({self.features.horizon}): a label window would cross into the next part")
        if self.universe is not None:
            self.universe_symbols(self.universe)
        return self

    def universe_symbols(self, name: str | None) -> tuple[str, ...] | None:
        """The symbols of universe `name` (None: None, the watch list is the universe).

        Raises:
            ValueError: no such universe (the known ones are named).
        """
        if name is None:
            return None
        if name not in self.universes:
            known = ", ".join(sorted(self.universes)) or "none"
            raise ValueError(f"unknown universe {name!r}: data.universes has {known}")
        return self.universes[name]


class RetrainingSettings(_Section):
    min_hours_between: float = Field(24, ge=0)
    performance_threshold: float = Field(0.7, gt=0, description="retrain when a production model's live composite "
                                         "is below this share of its composite at deployment")


class ModelsSettings(_Section):
    model_types: tuple[ModelType, ...] = MODEL_TYPES
    registry_path: Path = Path("artifacts/registry")
    retraining: RetrainingSettings = RetrainingSettings()
    threads: int = Field(1, ge=1, description="CPU threads per training job")
    seed: int = 42
    params: dict[ModelType, dict[str, Any]] = Field(
        default_factory=dict, description="hyper-parameters per model type when tuning is off, or to start from")
    grouped_types: tuple[ModelType, ...] = Field(
        ("arima", "catboost"), description="model types whose short fits train `group_size` jobs per task run, "
        "where a task run's orchestration would rival the fit; the others train one task run per job")
    group_size: int = Field(50, ge=1, description="jobs per task run of a grouped model type (split evenly)")
    scope: Literal["per_symbol", "pooled", "both"] = Field(
        "both", description="per_symbol: one model per (symbol, type); pooled: one model per type over every "
        "symbol of the run (not ARIMA, which models one series); both: each symbol's candidates include both")
    per_symbol_types: tuple[ModelType, ...] | None = Field(
        None, description="with scope per_symbol or both: the model types of `model_types` trained per symbol "
        "(None: all of them); e.g. [arima, catboost] keeps the networks pooled only, as a large universe needs")
    pooled_max_features: int = Field(60, ge=1, description="a pooled model reads the features kept by the most "
                                     "symbols, at most this many")
    pooled_max_rows: int | None = Field(
        50_000, ge=1_000, description="rows one pass of a pooled fit reads, drawn over every symbol (seeded): "
        "CatBoost fits on a sample of this many train (and val) rows, a network draws this many training windows "
        "afresh each epoch and validates on a fixed sample of this many; a pooled fit's cost stops growing with "
        "the universe. None: every row")
    pooled_normalisation: Literal["zscore", "symbol"] = Field(
        "zscore", description="zscore: features z-scored per date across the symbols, label demeaned per date "
        "(cross-sectional); symbol: each symbol normalised on its own train rows")

    @field_validator("model_types")
    @classmethod
    def _some_model_types(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        if not types:
            raise ValueError("list at least one model type")
        return tuple(dict.fromkeys(types))

    @field_validator("per_symbol_types")
    @classmethod
    def _per_symbol_types_unique(cls, types: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if types is None else tuple(dict.fromkeys(types))


class OptimizationSettings(_Section):
    enabled: bool = True
    n_trials: int = Field(50, ge=1)
    timeout: float = Field(1800, gt=0, description="seconds per study")
    folds: int = Field(3, ge=2, description="walk-forward folds of the train split per trial")
    symbols_per_trial: int | None = Field(8, ge=1, description="symbols each trial is scored on, drawn afresh per "
                                          "trial (seeded): tuning time does not grow with the universe; "
                                          "None: every symbol")
    storage_path: Path = Path("artifacts/optuna/studies.db")


class BacktestSettings(_Section):
    initial_capital: float = Field(100_000, gt=0)
    commission: float = Field(0.001, ge=0, lt=1, description="fraction of traded value, per side")
    lot_size: int = Field(100, ge=1, description="shares are traded in whole lots of this size; the pipeline "
                          "sets it per symbol from markets (markets.exchanges.<name>.lot_size)")
    fractional: bool = Field(False, description="trade any fraction of a share instead of whole lots")
    threshold: float = Field(0.0, ge=0, description="go long when the predicted return exceeds this")
    allow_short: bool = Field(False, description="short when the prediction is below -threshold")
    risk_free_rate: float = Field(0.0, description="annual, for Sharpe and Sortino")


class CrossValidationSettings(_Section):
    cv_folds: int = Field(5, ge=2, description="walk-forward folds of a per-symbol model")
    pooled_folds: int = Field(3, ge=2, description="walk-forward folds of a universe (pooled) model: each refits it "
                              "on the whole universe, so each costs a pooled fit; its folds score every evaluated "
                              "symbol, so fewer of them still rest on many blocks")


class PortfolioSettings(_Section):
    """The top-k portfolio a universe model's ranking is traded as (tasks/evaluation/portfolio.py)."""

    top_k: int = Field(10, ge=1, description="names held, equal weight; at most half the universe's symbols")
    n_drop: int = Field(1, ge=1, description="most holdings replaced per day (the worst-ranked outside the top k); "
                        "1 of 10 is qlib's TopkDropout ratio (5 of 50)")
    initial_capital: float = Field(1e9, gt=0, description="in the prices' currency: 1e9 VND holds ten names in "
                                   "lots of 100 at HOSE prices")


class EvaluationSettings(_Section):
    backtesting: BacktestSettings = BacktestSettings()
    cross_validation: CrossValidationSettings = CrossValidationSettings()
    portfolio: PortfolioSettings = PortfolioSettings()


class DeploymentSettings(_Section):
    enabled: bool = Field(True, description="deploy champions at the end of the training flow")
    staging_endpoint: str = "http://127.0.0.1:8001"
    production_endpoint: str = "http://127.0.0.1:8002"
    token: SecretStr | None = Field(None, description="bearer token the model servers accept")
    packages_path: Path = Path("artifacts/packages")
    max_package_mb: float = Field(100, gt=0)
    max_request_bytes: int = Field(4 * 1024 * 1024, gt=0, description="largest body of a model server request other "
                                   "than a package (413 beyond); parity sends every held-out row in one request")
    timeout_seconds: float = Field(30, gt=0, description="per HTTP request")
    retries: int = Field(3, ge=0, description="retries of a push when the server cannot be reached")
    parity_tolerance: float = Field(1e-6, gt=0, description="max |staging - offline| prediction difference")
    latency_requests: int = Field(30, ge=5)
    max_p95_ms: float = Field(500, gt=0, description="p95 latency bound of /v1/predict on staging")

    @field_validator("token")
    @classmethod
    def _usable_token(cls, token: SecretStr | None) -> SecretStr | None:
        """An empty token would fail later as an illegal Authorization header: refuse it now."""
        if token is None:
            return None
        text = token.get_secret_value()
        if not text.strip():
            raise ValueError("is empty: set a token (e.g. `python -c 'import secrets; print(secrets.token_hex(16))'`) "
                             "or unset STOCK_AI_DEPLOYMENT__TOKEN")
        if text != text.strip() or not text.isascii() or not text.isprintable():
            raise ValueError("has spaces at an end, control or non-ASCII characters: not usable in an HTTP header")
        return token


class Market(_Section):
    """An exchange: its time zone, board lot and trading days."""

    timezone: str = "Asia/Ho_Chi_Minh"
    lot_size: int = Field(100, ge=1, description="shares per board lot")
    calendar: str | None = Field(None, description="exchange-calendars name (XNYS, XLON, ...) for the trading "
                                 "days; None: weekdays except `holidays`")
    holidays: tuple[date, ...] = Field((), description="weekdays the exchange is closed, when calendar is None")
    price_band: float | None = Field(0.07, ge=0.01, lt=1, description="daily limit as a fraction of the previous "
                                     "close: no buy after a close at the ceiling, no sell after one at the floor; "
                                     "None: no band")
    sell_tax: float = Field(0.001, ge=0, lt=1, description="tax on the value of every sale")
    settlement_days: int = Field(2, ge=0, description="sessions after a purchase before its shares may be sold "
                                 "(T+2 on HOSE); 0: at once")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Ho_Chi_Minh)") from None
        return value


def _default_exchanges() -> dict[str, Market]:
    return {"HOSE": Market(), "XNYS": Market(timezone="America/New_York", lot_size=1, calendar="XNYS", price_band=None,
                                             sell_tax=0.0, settlement_days=0)}


class MarketSettings(_Section):
    """Which exchange each symbol trades on; the exchange decides lot size, time zone and trading days."""

    default: str = Field("HOSE", description="exchange of every symbol not listed in `symbols`")
    exchanges: dict[str, Market] = Field(default_factory=_default_exchanges)
    symbols: dict[str, str] = Field(default_factory=dict, description="symbol -> exchange, e.g. {GOOG: XNYS}")

    @model_validator(mode="after")
    def _known_exchanges(self) -> MarketSettings:
        for symbol, exchange in {"default": self.default, **self.symbols}.items():
            if symbol != "default":
                validate_symbol(symbol)
            if exchange not in self.exchanges:
                raise ValueError(f"{'default' if symbol == 'default' else f'symbols.{symbol}'}: unknown exchange "
                                 f"{exchange!r} (known: {', '.join(sorted(self.exchanges))})")
        return self

    def of(self, symbol: str) -> Market:
        """The market `symbol` trades on."""
        return self.exchanges[self.symbols.get(symbol, self.default)]


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class _Scheduled(_Section):
    enabled: bool = True
    time: str = "02:00"

    @field_validator("time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"time must be HH:MM (24h), got {value!r}")
        return value


class DailyRetrainSettings(_Scheduled):
    max_data_age_hours: float = Field(48, gt=0)


class WeeklyEvaluationSettings(_Scheduled):
    day: Weekday = "sunday"
    time: str = "01:00"
    window_days: int = Field(60, ge=2, description="newest labelled sessions the production models are scored on; "
                             "their composite over them against the composite at deployment is the model's "
                             "performance (models.retraining.performance_threshold)")
    drift_days: int = Field(10, ge=2, description="newest sessions whose daily range is compared with the "
                            "reference_days before them")
    reference_days: int = Field(60, ge=5, description="sessions before the drift_days the daily range is compared with")
    volatility_bound: float = Field(1.7, gt=1, description="degraded when the symbol's daily range over the "
                                    "drift_days is more than this multiple of the reference one, or less than its "
                                    "inverse")
    market_volatility_bound: float = Field(1.45, gt=1, description="the same bound on the market's daily range "
                                           "(the median shift over data.universe, or the symbols evaluated)")
    retrain_wait_hours: float = Field(6, gt=0, description="how long the weekly run waits for the retrain it "
                                      "started; a retrain still running then fails the weekly run")


class SchedulingSettings(_Section):
    timezone: str = "Asia/Ho_Chi_Minh"
    work_pool: str = "stock-ai"
    daily_retrain: DailyRetrainSettings = DailyRetrainSettings()
    weekly_evaluation: WeeklyEvaluationSettings = WeeklyEvaluationSettings()


class MonitoringSettings(_Section):
    webhook_url: str | None = Field(None, description="Slack-compatible incoming webhook; None = log only")
    history_path: Path = Path("artifacts/monitoring/history.sqlite")
    slow_factor: float = Field(3.0, gt=1, description="a run or task slower than this x its recent median is flagged")
    history_runs: int = Field(20, ge=1, description="past runs a new one is compared with")
    min_history: int = Field(3, ge=1, description="runs needed before slowness is judged")


class WeightSettings(_Section):
    r2: float = Field(0.3, ge=0)
    sharpe: float = Field(0.4, ge=0)
    drawdown: float = Field(0.3, ge=0)

    @model_validator(mode="after")
    def _not_all_zero(self) -> WeightSettings:
        if self.r2 + self.sharpe + self.drawdown <= 0:
            raise ValueError("weights r2, sharpe and drawdown must not all be zero")
        return self


class ModelSelectionSettings(_Section):
    weights: WeightSettings = WeightSettings()
    significance_level: float = Field(0.05, gt=0, lt=1, description="largest Holm-adjusted p-value with which a "
                                      "challenger passes the gate (tasks/evaluation/gate.py), and largest "
                                      "Diebold-Mariano p-value with which it beats production")
    universe_min_symbols: int = Field(5, ge=2, description="symbols a test date needs to count in a universe model's "
                                      "daily rank IC; a universe of fewer symbols gives its models no evidence")
    require_positive_excess: bool = Field(True, description="a universe model passes its gate only if its top-k "
                                          "portfolio beats the equal-weight universe after costs on the test dates")


class ExecutionSettings(_Section):
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = Field(None, description="scheduler of an existing Dask cluster; None = local")
    dask_workers: int = Field(2, ge=1, description="worker processes of the local Dask cluster")
    batch_size: int = Field(100, ge=1, description="symbols per task run of each data pipeline step")
    cache_dir: Path = Path("artifacts/cache")
    cache_max_age_days: float = Field(30, gt=0, description="cached results older than this are removed")
    cache_max_mb: float = Field(2048, gt=0, description="the oldest cached results are removed beyond this size")
    reports_dir: Path = Path("reports")
    io_retries: int = Field(3, ge=0, description="retries of I/O tasks (load, store, record-scores, notify)")
    io_retry_delays: tuple[float, ...] = Field((2.0, 8.0, 20.0), description="seconds before each retry; the last "
                                               "one repeats when io_retries outnumber them; 30 s in all at most")

    @model_validator(mode="after")
    def _io_retries_within_30_s(self) -> ExecutionSettings:
        """An error that outlasts half a minute of retries will not pass in a few more: waiting longer only delays
        its report (Prefect waits the last delay again for each retry beyond the delays given)."""
        delays = self.io_retry_delays
        if any(d < 0 for d in delays):
            raise ValueError(f"io_retry_delays must not be negative, got {list(delays)}")
        waits = [delays[min(i, len(delays) - 1)] for i in range(self.io_retries)] if delays else []
        if sum(waits) > 30:
            raise ValueError(f"io_retry_delays [{', '.join(f'{d:g}' for d in delays)}] with io_retries="
                             f"{self.io_retries} wait {' + '.join(f'{w:g}' for w in waits)} = {sum(waits):g} s "
                             f"in all; at most 30 s")
        return self


class Settings(BaseSettings):
    """The root of all configuration; sections mirror config/pipeline_config.yml."""

    model_config = SettingsConfigDict(
        env_prefix="STOCK_AI_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data: DataSettings = DataSettings()
    models: ModelsSettings = ModelsSettings()
    optimization: OptimizationSettings = OptimizationSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    deployment: DeploymentSettings = DeploymentSettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    model_selection: ModelSelectionSettings = ModelSelectionSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    execution: ExecutionSettings = ExecutionSettings()
    markets: MarketSettings = MarketSettings()

    @model_validator(mode="after")
    def _lots_come_from_markets(self) -> Settings:
        if "lot_size" in self.evaluation.backtesting.model_fields_set:
            raise ValueError("evaluation.backtesting.lot_size is set per market: use "
                             "markets.exchanges.<exchange>.lot_size (and markets.symbols to map symbols)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Priority, highest first: explicit overrides (CLI flags), environment, YAML file.
        yaml_source = InitSettingsSource(settings_cls, init_kwargs=_yaml_values.get() or {})
        return init_settings, env_settings, yaml_source

    def resolved(self) -> Settings:
        """Return a copy whose relative paths are made absolute against the working directory."""
        def absolute(path: Path) -> Path:
            return path if path.is_absolute() else (Path.cwd() / path).resolve()

        data = self.data.model_copy(update={
            "prices_path": absolute(self.data.prices_path),
            "feature_store_path": absolute(self.data.feature_store_path),
        })
        models = self.models.model_copy(update={"registry_path": absolute(self.models.registry_path)})
        optimization = self.optimization.model_copy(
            update={"storage_path": absolute(self.optimization.storage_path)})
        monitoring = self.monitoring.model_copy(update={"history_path": absolute(self.monitoring.history_path)})
        deployment = self.deployment.model_copy(
            update={"packages_path": absolute(self.deployment.packages_path)})
        execution = self.execution.model_copy(update={"cache_dir": absolute(self.execution.cache_dir),
                                                      "reports_dir": absolute(self.execution.reports_dir)})
        return self.model_copy(update={"data": data, "models": models, "optimization": optimization,
                                       "deployment": deployment, "monitoring": monitoring,
                                       "execution": execution})


def load_settings(config_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the root Settings once, at an entry point.

    Args:
        config_file: YAML file; defaults to `$STOCK_AI_CONFIG` or config/pipeline_config.yml.
        overrides: nested values that win over file and environment (CLI flags).

    Raises:
        ConfigError: the file is missing or unreadable, or a value is invalid (the message names the key).
    """
    path = Path(config_file or os.environ.get("STOCK_AI_CONFIG") or DEFAULT_CONFIG_FILE)
    token = _yaml_values.set(read_yaml(path))
    prefix = Settings.model_config.get("env_prefix", "")
    try:
        return Settings(**dict(overrides or {})).resolved()
    except ValidationError as exc:
        raise ConfigError(describe_invalid(exc, Settings, prefix)) from None
    except SettingsError as exc:  # an environment value that should be JSON is not
        raise ConfigError(describe_environment(exc, Settings, prefix)) from None
    finally:
        _yaml_values.reset(token)
