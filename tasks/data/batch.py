"""The data steps over a batch of symbols: one task run per step per batch, so orchestration cost follows the
data, not the symbol count (a Prefect task run costs tens of milliseconds; cleaning one symbol, a few).

Each step applies the per-symbol step (tasks/data/clean.py, engineer, select, split, store) to every symbol of
the batch; engineering runs once on the batch's long frame (`symbol` column, polars `over`). A symbol that
fails is carried as a failure, named with its step, and left out of the later steps; its batch goes on.

Caching is by input key, not by Prefect's result cache: `plan_batches` keys every symbol on its price store
fingerprint, the data settings, its market and the pipeline's source code, and looks for an intact snapshot
of the symbol built from that key (the current one or a kept older one; its manifest records `input_key`).
A batch where every symbol has one is fresh: none of its steps runs. The steps pass frames in memory and
persist nothing, since pickling a batch's engineered frames would cost more than recomputing them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Generic, TypeVar

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.hashing import hash_objects

from schemas import CalendarGap, CleaningReport, DataSummary, FeatureSetRef, SelectionReport
from settings import DataSettings, Market
from stores.base import PriceStore, PriceStoreUnavailable
from stores.features import FeatureStore, FeatureStoreError
from tasks.data.calendar import RunCalendar, run_calendar
from tasks.data.clean import Cleaned, clean
from tasks.data.features import SYMBOL, compute_features
from tasks.data.select import Selected, select
from tasks.data.split import Splits, check_history, split
from tasks.data.store import PIPELINE_MODULES, publish, store
from tasks.operations.caching import code_version, file_system_error, stable_token
from tasks.operations.monitor import resource_logged

__all__ = ["STEPS", "Batch", "Stage", "adopt", "clean_batch", "engineer_batch", "load_batch", "plan_batches",
           "publish_batch", "select_batch", "split_batch", "store_batch"]

T = TypeVar("T")
U = TypeVar("U")
STEPS = ("load", "clean", "engineer", "select", "split", "store")


@dataclass(frozen=True)
class Batch:
    """Symbols processed together, their input keys, and whether their stored snapshots are current."""

    number: int
    of: int
    symbols: tuple[str, ...]
    keys: dict[str, str]
    """symbol -> input key: price fingerprint, data settings, market and pipeline code."""
    found: dict[str, FeatureSetRef]
    """symbol -> an intact snapshot built from its key, where there is one."""
    calendar: RunCalendar
    """the run's split dates, shared by every batch."""

    @property
    def fresh(self) -> bool:
        """Every symbol has a snapshot built from its key: nothing to run."""
        return set(self.found) == set(self.symbols)

    @property
    def label(self) -> str:
        return f"{self.number}-of-{self.of}"


@dataclass(frozen=True)
class Stage(Generic[T]):
    """One step's output for a batch: a value per symbol that succeeded, an error per symbol that failed."""

    batch: Batch
    values: dict[str, T]
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    """symbol -> (step, error) for symbols that failed in this step or before."""


def _message(exc: Exception) -> str:
    """The project's own errors say what is wrong in words; anything else also names its type."""
    own = type(exc).__module__.split(".")[0] in {"schemas", "settings", "stores", "tasks", "models"}
    return str(exc) if own and str(exc) else f"{type(exc).__name__}: {exc}"


def _each(step: str, stage: Stage[T], work: Callable[[str, T], U],
          outages: tuple[type[Exception], ...] = (PriceStoreUnavailable,)) -> Stage[U]:
    """Apply `work` to each symbol of `stage`; a failure is recorded for that symbol only, except `outages`:
    no symbol's fault, they fail the batch's task run at once (which its retries may then heal)."""
    values: dict[str, U] = {}
    failed = dict(stage.failed)
    for symbol, value in stage.values.items():
        try:
            values[symbol] = work(symbol, value)
        except outages:
            raise
        except Exception as exc:  # one symbol's failure is reported, the batch goes on
            failed[symbol] = (step, _message(exc))
    return Stage(stage.batch, values, failed)



def input_key(symbol: str, fingerprint: str, data: DataSettings, market: Market, calendar: RunCalendar) -> str:
    """What a symbol's feature set is built from: its bars, the data settings, its market, the run's split dates and
    the code (a new day of another symbol changes the key only if it moves a split date)."""
    return str(hash_objects(symbol, fingerprint, stable_token((data.start_date, data.end_date, data.cleaning,
                                                                data.features, data.split, data.selection)),
                            stable_token(market), stable_token(calendar.boundaries), code_version(PIPELINE_MODULES),
                            raise_on_failure=True))


def _built_from(feature_store: FeatureStore, symbol: str, key: str) -> FeatureSetRef | None:
    """An intact snapshot of `symbol` built from `key`: the current one, else one of the kept older ones."""
    try:
        candidates = [feature_store.current(symbol)]
    except (FeatureStoreError, OSError, ValueError, KeyError):
        candidates = []
    candidates += feature_store.snapshots(symbol)
    for ref in candidates:
        try:
            if feature_store.manifest(ref).get("input_key") == key:
                feature_store.check(ref, quick=True)
                return ref
        except (FeatureStoreError, OSError, ValueError, KeyError):
            continue
    return None


def run_dates(symbols: list[str], price_store: PriceStore, data: DataSettings) -> RunCalendar:
    """The run's split dates, shared by every symbol: from the union of the symbols' trading dates in the window
    (a symbol the store cannot read is left out here; `load` reports it)."""
    dates, unreadable = {}, []
    for symbol in symbols:
        try:
            dates[symbol] = price_store.load(symbol, data.start_date, data.end_date)["date"].sort().to_list()
        except PriceStoreUnavailable:
            raise
        except Exception as exc:  # reported by load_batch, unless no symbol can be read at all
            unreadable.append(exc)
    if not dates and unreadable:
        raise unreadable[0]
    return run_calendar(dates, data.features, data.split)


@task(name="plan-batches", task_run_name="plan-batches", cache_policy=NO_CACHE)
@resource_logged
def plan_batches(symbols: list[str], price_store: PriceStore, feature_store: FeatureStore, data: DataSettings,
                 markets: dict[str, Market], size: int, workers: int = 1) -> list[Batch]:
    """Set the run's calendar (`run_dates`), cut `symbols` into even batches of at most `size` (at least `workers`
    of them while there are symbols enough, so the batches run side by side), keyed on each symbol's price
    fingerprint and the calendar's split dates; find the snapshots already built from those keys.

    A symbol the store cannot fingerprint (unknown, unreachable) gets a key of its own making it stale, so
    its batch runs and `load` reports the real error.
    """
    calendar = run_dates(symbols, price_store, data)
    print(f"calendar: {calendar.describe()}")
    keys: dict[str, str] = {}
    for symbol in symbols:
        try:
            fingerprint = price_store.fingerprint(symbol, data.start_date, data.end_date)
        except PriceStoreUnavailable:
            raise  # already retried within data.mongodb.max_wait_seconds: the run fails, saying so
        except Exception as exc:  # reported by load_batch
            fingerprint = f"unavailable: {type(exc).__name__}"
        keys[symbol] = input_key(symbol, fingerprint, data, markets[symbol], calendar)
    count = max(-(-len(symbols) // size), min(workers, len(symbols)))  # never fewer batches than workers
    groups = [symbols[i * len(symbols) // count:(i + 1) * len(symbols) // count] for i in range(count)]
    found = {s: ref for s in symbols if (ref := _built_from(feature_store, s, keys[s])) is not None}
    return [Batch(n, len(groups), tuple(group), {s: keys[s] for s in group},
                  {s: found[s] for s in group if s in found}, calendar)
            for n, group in enumerate(groups, start=1)]


@task(name="load-batch", task_run_name="load-batch-{batch.label}", cache_policy=NO_CACHE)
@resource_logged
def load_batch(batch: Batch, price_store: PriceStore, data: DataSettings) -> Stage[pl.DataFrame]:
    """Each symbol's bars in the window."""
    from tasks.data.load import read_window

    start = Stage(batch, {symbol: symbol for symbol in batch.symbols})
    return _each("load", start, lambda symbol, _: read_window(price_store, symbol, data))


@task(name="clean-batch", task_run_name="clean-batch-{stage.batch.label}", cache_policy=NO_CACHE)
@resource_logged
def clean_batch(stage: Stage[pl.DataFrame], data: DataSettings, markets: dict[str, Market]) -> Stage[Cleaned]:
    return _each("clean", stage, lambda s, bars: clean.fn(bars, s, data.cleaning, markets[s]))


@task(name="engineer-batch", task_run_name="engineer-batch-{stage.batch.label}", cache_policy=NO_CACHE)
@resource_logged
def engineer_batch(stage: Stage[Cleaned], data: DataSettings) -> Stage[pl.DataFrame]:
    """Every feature and the label, computed once over the batch's long frame (per symbol, `over`)."""
    def enough(symbol: str, cleaned: Cleaned) -> Cleaned:
        check_history(cleaned.frame.height, symbol, data.features, data.split)
        return cleaned

    checked = _each("engineer", stage, enough)
    if not checked.values:
        return Stage(checked.batch, {}, checked.failed)
    long = pl.concat([c.frame.with_columns(pl.lit(s).alias(SYMBOL)) for s, c in checked.values.items()],
                     how="vertical_relaxed")
    engineered = compute_features(long, data.features).partition_by(SYMBOL, as_dict=True, include_key=False)
    return Stage(checked.batch, {s: engineered[(s,)] for s in checked.values}, checked.failed)


@task(name="select-batch", task_run_name="select-batch-{stage.batch.label}", cache_policy=NO_CACHE)
@resource_logged
def select_batch(stage: Stage[pl.DataFrame], data: DataSettings) -> Stage[Selected]:
    calendar = stage.batch.calendar
    return _each("select", stage, lambda s, frame: select.fn(frame, s, data.features, calendar, data.selection))


@task(name="split-batch", task_run_name="split-batch-{stage.batch.label}", cache_policy=NO_CACHE)
@resource_logged
def split_batch(stage: Stage[Selected], data: DataSettings) -> Stage[Splits]:
    calendar = stage.batch.calendar
    return _each("split", stage, lambda s, selected: split.fn(selected, s, data.features, data.split, calendar))


@task(name="store-batch", task_run_name="store-batch-{stage.batch.label}", cache_policy=NO_CACHE,
      retry_condition_fn=file_system_error)  # retries: execution.io_retries, set by the data pipeline
@resource_logged
def store_batch(stage: Stage[Splits], cleaned: Stage[Cleaned], selected: Stage[Selected],
                feature_store: FeatureStore, data: DataSettings) -> Stage[FeatureSetRef]:
    """Write each symbol's snapshot (not yet current), with the input key it was built from. A file system error
    fails the task run, retried when it may heal (a full disk, not a read-only store): writing the same content
    again keeps the snapshot already there."""
    def write(symbol: str, splits: Splits) -> FeatureSetRef:
        return store.fn(splits, symbol, cleaned.values[symbol], selected.values[symbol], feature_store,
                        data.features.horizon, input_key=stage.batch.keys[symbol], calendar=stage.batch.calendar)

    return _each("store", stage, write, outages=(PriceStoreUnavailable, OSError))


@task(name="publish-batch", task_run_name="publish-batch-{stage.batch.label}", cache_policy=NO_CACHE,
      retry_condition_fn=file_system_error)  # retries: execution.io_retries, set by the data pipeline
@resource_logged
def publish_batch(stage: Stage[FeatureSetRef], feature_store: FeatureStore) -> Stage[FeatureSetRef]:
    """Make each stored snapshot its symbol's current one (a file system error fails the task run, retried when
    it may heal; publishing again is harmless)."""
    return _each("publish", stage, lambda _, ref: publish.fn(ref, feature_store),
                 outages=(PriceStoreUnavailable, OSError))


def adopt(feature_store: FeatureStore, ref: FeatureSetRef) -> DataSummary:
    """A fresh symbol's summary, read back from the manifest of the snapshot built from its inputs, which
    becomes the current one if it is not (a configuration used before, then another, then this one again)."""
    try:
        current = feature_store.current(ref.symbol)
    except FeatureStoreError:
        current = None
    if current != ref:
        feature_store.publish(ref)
    meta = feature_store.manifest(ref)
    cleaning = dict(meta["cleaning"])
    report = CleaningReport(
        symbol=cleaning["symbol"], rows_in=cleaning["rows_in"], rows_out=cleaning["rows_out"],
        fixes=dict(cleaning["fixes"]),
        flagged_jumps=tuple(date.fromisoformat(d) for d in cleaning["flagged_jumps"]),
        zero_volume_days=tuple(date.fromisoformat(d) for d in cleaning["zero_volume_days"]),
        gaps=tuple(CalendarGap(date.fromisoformat(g["after"]), date.fromisoformat(g["before"]), g["sessions"])
                   for g in cleaning["gaps"]))
    selection = SelectionReport(kept=ref.features, dropped=dict(meta["selection"]["dropped"]))
    return DataSummary(ref, report, selection, meta["selection"]["engineered"], len(STEPS), len(STEPS))
