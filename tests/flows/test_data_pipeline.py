"""The data-pipeline flow end to end: caching, recomputation, bad input, both price stores."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from flows.data_pipeline import DataPipelineError, data_pipeline, main
from settings import Settings, load_settings
from stores.base import SourceInfo
from stores.features import FeatureStore, read_split
from stores.parquet import ParquetPriceStore
from tests.conftest import random_walk_prices

pytestmark = pytest.mark.usefixtures("prefect_harness")
SYMBOLS = ["VCB", "VIC", "VHM"]


def seeded(config: Path, days: int = 300) -> Settings:
    settings = load_settings(config)
    store = ParquetPriceStore(settings.data.prices_path)
    for i, symbol in enumerate(SYMBOLS):
        store.upsert(symbol, random_walk_prices(days, seed=i), SourceInfo(kind="synthetic", synthetic=True))
    return settings


def by_symbol(summaries: list) -> dict:
    return {s.ref.symbol: s for s in summaries}


def test_rerun_skips_unchanged_batches_and_a_changed_bar_recomputes_only_its_batch(
        small_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flows.data_pipeline.os.cpu_count", lambda: 1)
    settings = seeded(small_config)  # batches of at most two, split evenly: [VCB], [VIC, VHM]
    settings = settings.model_copy(update={"execution": settings.execution.model_copy(update={"batch_size": 2})})
    first = by_symbol(data_pipeline(symbols=SYMBOLS, settings=settings))
    assert all(s.cached_tasks == 0 and s.total_tasks == 6 for s in first.values())
    assert first["VCB"].ref.rows["latest"] == 1
    assert sum(first["VCB"].ref.rows[p] for p in ("train", "val", "test")) > 100

    second = by_symbol(data_pipeline(symbols=SYMBOLS, settings=settings))
    assert all(s.cached_tasks == 6 for s in second.values())
    assert {k: s.ref for k, s in second.items()} == {k: s.ref for k, s in first.items()}

    store = ParquetPriceStore(settings.data.prices_path)
    bars = store.load("VHM")
    changed = bars.tail(1).with_columns(pl.col("close") * 1.01, pl.col("high") * 1.01)
    assert store.upsert("VHM", changed, SourceInfo(kind="csv")) == 0  # a corrected bar: no new date

    third = by_symbol(data_pipeline(symbols=SYMBOLS, settings=settings))
    assert third["VHM"].cached_tasks == third["VIC"].cached_tasks == 0  # VHM's batch ran again
    assert third["VHM"].ref.content_hash != first["VHM"].ref.content_hash
    assert third["VIC"].ref == first["VIC"].ref  # same content: the same snapshot
    assert third["VCB"].cached_tasks == 6

    manifest = FeatureStore(settings.data.feature_store_path).manifest(third["VHM"].ref)
    assert manifest["features"] == list(third["VHM"].selection.kept)
    assert set(manifest) >= {"content_hash", "code_version", "rows", "files", "cleaning", "horizon", "calendar"}
    assert manifest["calendar"]["symbols"] == 3 and manifest["calendar"]["source"] == "fractions"
    assert set(manifest["engineered_features"]) > set(manifest["features"])  # every feature, for universe models


def test_new_days_move_the_split_dates_of_every_symbol_unless_they_are_configured(
        small_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flows.data_pipeline.os.cpu_count", lambda: 1)
    settings = seeded(small_config)
    settings = settings.model_copy(update={"execution": settings.execution.model_copy(update={"batch_size": 2})})
    first = by_symbol(data_pipeline(symbols=SYMBOLS, settings=settings))
    store = ParquetPriceStore(settings.data.prices_path)
    bars = store.load("VHM")
    later = pl.concat([bars.tail(1).with_columns(pl.col("date") + timedelta(days=7 + day)) for day in range(5)])
    assert store.upsert("VHM", later, SourceInfo(kind="csv")) == 5

    # Fractions of the union of dates: VHM's 5 new days move the split dates, so every symbol is cut again, and
    # all of them still share one test start.
    moved = by_symbol(data_pipeline(symbols=SYMBOLS, settings=settings))
    assert all(s.cached_tasks == 0 for s in moved.values())
    starts = {s: read_split(m.ref, "test")["date"].min() for s, m in moved.items()}
    assert len(set(starts.values())) == 1 and starts["VCB"] > read_split(first["VCB"].ref, "test")["date"].min()

    # Dates given in the configuration do not move: a new day reruns its own batch only.
    fixed_split = settings.data.split.model_copy(update={"val_start": starts["VCB"] - timedelta(days=60),
                                                          "test_start": starts["VCB"]})
    fixed = settings.model_copy(update={"data": settings.data.model_copy(update={"split": fixed_split})})
    before = by_symbol(data_pipeline(symbols=SYMBOLS, settings=fixed))
    newest = store.load("VHM").tail(1).with_columns(pl.col("date") + timedelta(days=7))
    assert store.upsert("VHM", newest, SourceInfo(kind="csv")) == 1
    after = by_symbol(data_pipeline(symbols=SYMBOLS, settings=fixed))
    assert after["VCB"].cached_tasks == 6 and after["VIC"].ref == before["VIC"].ref
    assert after["VHM"].ref.rows["test"] == before["VHM"].ref.rows["test"] + 1

    # A symbol whose feed stopped while the others went on has too few test rows on their dates: said.
    for _ in range(6):
        newest = store.load("VHM").tail(5).with_columns(pl.col("date") + timedelta(days=7))
        store.upsert("VHM", newest, SourceInfo(kind="csv"))
    stale = (r"VCB has \d+ test row\(s\) on the run's calendar .*its rows end on \d{4}-\d\d-\d\d, before the run's "
             r"last date .* \(a stale feed or a delisting\?\)")
    with pytest.raises(DataPipelineError, match=stale):
        data_pipeline(symbols=SYMBOLS, settings=settings)


def test_bad_symbols_fail_clearly_and_stored_sets_survive(small_config: Path) -> None:
    settings = seeded(small_config)
    good = by_symbol(data_pipeline(symbols=["VCB"], settings=settings))["VCB"].ref
    ParquetPriceStore(settings.data.prices_path).upsert("SHORT", random_walk_prices(50), SourceInfo(kind="csv"))

    with pytest.raises(DataPipelineError) as info:
        data_pipeline(symbols=["VCB", "NOPE", "SHORT"], settings=settings)
    message = str(info.value)
    assert "NOPE: load failed: no prices for symbol 'NOPE'" in message
    assert "SHORT: load failed: SHORT has 50 rows of history in the window" in message and "at least" in message
    assert "(the store holds 50 rows of it, " in message
    assert "VCB:" not in message
    assert FeatureStore(settings.data.feature_store_path).current("VCB") == good


def test_cli_prints_the_summary_and_rejects_bad_input(small_config: Path, capsys: pytest.CaptureFixture) -> None:
    seeded(small_config)
    assert main(["--symbols", "VCB,VHM", "--config", str(small_config)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["symbol", "rows", "features", "train", "val", "test", "latest",
                                           "fixes", "cached"]
    assert out.splitlines()[1].startswith("VCB ") and "feature store:" in out

    assert main(["--symbols", "../x", "--config", str(small_config)]) == 2
    assert "invalid symbol '../x'" in capsys.readouterr().err
    assert main(["--config", str(small_config.parent / "missing.yml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_empty_store_is_reported(small_config: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--symbols", "VCB", "--config", str(small_config)]) == 2
    assert "empty" in capsys.readouterr().err


def test_ingest_then_data_pipeline_from_mongodb(small_config: Path, mongo_settings, tmp_path: Path) -> None:
    from flows import ingest
    from stores.mongo import MongoPriceStore

    content = yaml.safe_load(small_config.read_text(encoding="utf-8"))
    content["data"]["source"] = "mongodb"
    content["data"]["mongodb"] = {"uri": mongo_settings.uri.get_secret_value(),
                                  "database": mongo_settings.database, "timeout_ms": 2000}
    config = tmp_path / "mongo.yml"
    config.write_text(yaml.safe_dump(content), encoding="utf-8")
    settings = load_settings(config)
    assert settings.data.source == "mongodb"
    assert ingest.main(["demo", "--symbols", "VHM", "--days", "260", "--seed", "7", "--end", "2025-06-30",
                        "--config", str(config)]) == 0
    summary = by_symbol(data_pipeline(symbols=["VHM"], settings=settings))["VHM"]
    bars = MongoPriceStore(settings.data.mongodb).load("VHM")
    assert bars.height == 260 and summary.cleaning.rows_in == 260
    assert summary.ref.rows["train"] > 0 and summary.cached_tasks == 0
    again = by_symbol(data_pipeline(symbols=["VHM"], settings=settings))["VHM"]
    assert again.cached_tasks == 6 and again.ref == summary.ref


def test_the_summary_names_days_without_volume_and_holes_in_the_calendar(small_config: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    settings = load_settings(small_config)
    bars = random_walk_prices(300, seed=5)
    # A zero-volume day, and ten weekdays (two weeks) missing from the history.
    bars = bars.with_columns(pl.when(pl.int_range(pl.len()) == 150).then(0.0).otherwise(pl.col("volume"))
                             .alias("volume"))
    holed = pl.concat([bars.slice(0, 200), bars.slice(210)])
    ParquetPriceStore(settings.data.prices_path).upsert("VHM", holed, SourceInfo(kind="csv"))
    assert main(["--symbols", "VHM", "--config", str(small_config)]) == 0
    out = capsys.readouterr().out
    zero_day, before, after = bars["date"][150], bars["date"][199], bars["date"][210]
    assert f"clean: 1 day(s) with zero volume flagged, first {zero_day}" in out
    assert f"clean: 10 trading sessions missing between {before} and {after}" in out


def test_a_deleted_or_altered_feature_store_is_stored_again_not_served_from_the_cache(small_config: Path) -> None:
    settings = seeded(small_config)
    root = settings.data.feature_store_path
    first = by_symbol(data_pipeline(symbols=["VCB", "VIC"], settings=settings))

    shutil.rmtree(root)  # deleted by hand
    second = by_symbol(data_pipeline(symbols=["VCB", "VIC"], settings=settings))
    assert [s.cached_tasks for s in second.values()] == [0, 0]  # nothing to trust: built again
    store = FeatureStore(root)
    for symbol, summary in second.items():
        assert summary.ref == first[symbol].ref == store.current(symbol)
        store.check(summary.ref)

    pl.DataFrame({"x": [1.0]}).write_parquet(second["VIC"].ref.split_path("all"))  # altered by hand
    third = by_symbol(data_pipeline(symbols=["VCB", "VIC"], settings=settings))
    assert third["VCB"].cached_tasks == 6 and third["VIC"].cached_tasks == 0  # VIC's batch is built again
    assert read_split(store.current("VIC"), "test").height == first["VIC"].ref.rows["test"]


def test_current_follows_the_last_run_also_when_it_is_served_from_the_cache(small_config: Path) -> None:
    settings_a = seeded(small_config)
    settings_b = load_settings(small_config, {"data": {"selection": {"max_features": 5}}})
    store = FeatureStore(settings_a.data.feature_store_path)
    a = by_symbol(data_pipeline(symbols=["VCB"], settings=settings_a))["VCB"].ref
    b = by_symbol(data_pipeline(symbols=["VCB"], settings=settings_b))["VCB"].ref
    assert a.content_hash != b.content_hash and store.current("VCB") == b
    again = by_symbol(data_pipeline(symbols=["VCB"], settings=settings_a))["VCB"]
    assert again.cached_tasks == 6 and again.ref == a
    assert store.current("VCB") == a


def _task_run_names(flow_run_id: object) -> list[str]:
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    names: list[str] = []
    for _ in range(50):  # task runs reach the API through events, shortly after the flow ends
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        settled = all(r.state is not None and r.state.is_final() for r in runs)
        if settled and sorted(r.name for r in runs) == names and names:
            break  # the same final runs twice in a row: named after their parameters by now
        names = sorted(r.name for r in runs)
        time.sleep(0.2)
    return names


def test_one_task_run_per_step_per_batch_and_none_for_unchanged_batches(
        small_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flows.data_pipeline.os.cpu_count", lambda: 1)
    settings = seeded(small_config)
    settings = settings.model_copy(update={"execution": settings.execution.model_copy(update={"batch_size": 2})})

    state = data_pipeline(symbols=SYMBOLS, settings=settings, return_state=True)
    names = _task_run_names(state.state_details.flow_run_id)
    steps = ("load", "clean", "engineer", "select", "split", "store", "publish")
    assert names == sorted(["plan-batches", *(f"{s}-batch-{n}-of-2" for s in steps for n in (1, 2))])

    again = data_pipeline(symbols=SYMBOLS, settings=settings, return_state=True)
    assert _task_run_names(again.state_details.flow_run_id) == ["plan-batches"]
    assert all(s.cached_tasks == 6 for s in again.result())


def test_a_failing_symbol_leaves_the_rest_of_its_batch_stored(small_config: Path) -> None:
    settings = seeded(small_config)  # one batch: VCB, NOPE, VIC

    with pytest.raises(DataPipelineError) as info:
        data_pipeline(symbols=["VCB", "NOPE", "VIC"], settings=settings)

    assert str(info.value).count("\n  ") == 1 and "NOPE: load failed: no prices for symbol 'NOPE'" in str(info.value)
    store = FeatureStore(settings.data.feature_store_path)
    for symbol in ("VCB", "VIC"):
        store.check(store.current(symbol))


def test_batched_steps_store_what_the_per_symbol_steps_store(small_config: Path) -> None:
    from tasks.data.batch import run_dates
    from tasks.data.clean import clean
    from tasks.data.engineer import engineer
    from tasks.data.load import load_prices
    from tasks.data.select import select
    from tasks.data.split import split
    from tasks.data.store import store

    settings = seeded(small_config)
    data = settings.data
    prices, alone = ParquetPriceStore(data.prices_path), FeatureStore(small_config.parent / "alone")
    batched = by_symbol(data_pipeline(symbols=SYMBOLS, settings=settings))
    calendar = run_dates(SYMBOLS, prices, data)
    for symbol in SYMBOLS:  # the per-symbol steps, one after another, into a store of their own
        cleaned = clean.fn(load_prices.fn(symbol, data, prices), symbol, data.cleaning, settings.markets.of(symbol))
        selected = select.fn(engineer.fn(cleaned, symbol, data.features, data.split), symbol, data.features,
                             calendar, data.selection)
        ref = store.fn(split.fn(selected, symbol, data.features, data.split, calendar), symbol, cleaned, selected,
                       alone, data.features.horizon, calendar=calendar)
        assert ref.content_hash == batched[symbol].ref.content_hash and ref.features == batched[symbol].ref.features


def test_an_unreachable_store_fails_the_run_once_not_once_per_symbol(small_config: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    from settings import MongoSettings
    from stores.base import PriceStoreUnavailable
    from stores.mongo import MongoPriceStore
    from tasks.data.batch import Batch, load_batch
    from tasks.data.calendar import run_calendar
    from tests.mongo_fixtures import free_port

    calls = []
    load = MongoPriceStore.load

    def counted(self: MongoPriceStore, *args: object) -> object:
        calls.append(1)
        return load(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(MongoPriceStore, "load", counted)
    settings = load_settings(small_config)
    mongo = MongoSettings(uri=SecretStr(f"mongodb://127.0.0.1:{free_port()}"), timeout_ms=50, retries=1)
    data = settings.data.model_copy(update={"source": "mongodb", "mongodb": mongo})

    with pytest.raises(PriceStoreUnavailable, match="is unreachable"):
        data_pipeline(symbols=["VCB", "VIC", "VHM", "FPT"], settings=settings.model_copy(update={"data": data}))
    assert len(calls) == 1
    calendar = run_calendar({"VCB": [date(2024, 1, 1) + timedelta(days=i) for i in range(200)]},
                            settings.data.features, settings.data.split)
    batch = Batch(1, 1, ("VCB", "VIC"), {}, {}, calendar)
    with pytest.raises(PriceStoreUnavailable):  # inside a batch too: not recorded per symbol
        load_batch.fn(batch, MongoPriceStore(mongo), data)


@pytest.mark.parametrize(("full_disk", "tries"), [(False, 1), (True, 2)], ids=["file-where-folder-belongs", "ENOSPC"])
def test_a_file_system_error_fails_its_batch_not_the_other_after_retries_if_it_may_heal(
        full_disk: bool, tries: int, small_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import tempfile
    import time
    from types import SimpleNamespace

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    monkeypatch.setattr("flows.data_pipeline.os.cpu_count", lambda: 1)
    settings = seeded(small_config)  # batches: (VCB), (VIC, VHM)
    settings = settings.model_copy(update={"execution": settings.execution.model_copy(
        update={"batch_size": 2, "io_retries": 1, "io_retry_delays": (0.0,)})})
    root = settings.data.feature_store_path
    root.mkdir(parents=True, exist_ok=True)
    if full_disk:
        def mkdtemp(dir: Path, prefix: str) -> str:
            if Path(dir).name == "VCB":
                raise OSError(errno.ENOSPC, "No space left on device", str(dir))
            return tempfile.mkdtemp(dir=dir, prefix=prefix)

        monkeypatch.setattr("stores.features.tempfile", SimpleNamespace(mkdtemp=mkdtemp))
    else:  # every write under it: FileExistsError, which no retry heals
        (root / "VCB").write_text("a file where the symbol's folder belongs")

    state = data_pipeline(symbols=SYMBOLS, settings=settings, return_state=True)

    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "VCB: store failed:" in message and "VIC" not in message and "VHM" not in message
    for symbol in ("VIC", "VHM"):
        FeatureStore(root).check(FeatureStore(root).current(symbol))
    run_counts: dict[str, int] = {}
    for _ in range(50):  # task runs reach the API through events, shortly after the flow ends
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
        run_counts = {r.name: r.run_count for r in runs if r.state is not None and r.state.is_final()}
        if run_counts.get("store-batch-1-of-2") == tries and "store-batch-2-of-2" in run_counts:
            break
        time.sleep(0.2)
    assert run_counts["store-batch-1-of-2"] == tries  # the first try, and its one retry if the error may heal
    assert run_counts["store-batch-2-of-2"] == 1
    assert "publish-batch-1-of-2" not in run_counts


def test_a_run_whose_symbols_all_fail_to_load_names_the_first_error(small_config: Path) -> None:
    from stores.base import UnknownSymbolError

    settings = seeded(small_config)
    with pytest.raises(UnknownSymbolError, match="no prices for symbol 'NOPE'"):
        data_pipeline(symbols=["NOPE", "NADA"], settings=settings)
