"""The ingest CLI, end to end through main(argv), on both price-store backends."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml
from polars.testing import assert_frame_equal

from flows.ingest import main
from settings import MongoSettings, load_settings
from stores.base import PriceStore
from stores.factory import open_price_store
from stores.mongo import MongoPriceStore
from stores.parquet import ParquetPriceStore
from tasks.data.ingest import DEMO_PULL, DEMO_REVERSAL, DEMO_REVERSAL_IC, synthetic_market

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["parquet", "mongodb"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A config file for one backend: Parquet under tmp_path, or this test's own Mongo database."""
    data: dict[str, object] = {"source": request.param, "prices_path": str(tmp_path / "prices")}
    if request.param == "mongodb":
        mongo: MongoSettings = request.getfixturevalue("mongo_settings")
        data["mongodb"] = {"uri": mongo.uri.get_secret_value(), "database": mongo.database,
                           "timeout_ms": mongo.timeout_ms, "retries": 1}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"data": data}), encoding="utf-8")
    return path


@pytest.fixture
def store(config: Path) -> Iterator[PriceStore]:
    store = open_price_store(load_settings(config).data)
    yield store
    if isinstance(store, MongoPriceStore):
        store.close()


def test_demo_writes_a_synthetic_market(config: Path, store: PriceStore, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--symbols", "VCB,VIC", "--days", "80", "--seed", "7", "--end", "2024-06-28",
            "--config", str(config)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "VCB: 80 rows written, 80 new days" in out
    assert store.location() in out
    assert store.symbols() == ["VCB", "VIC"]
    info = store.source_info("VCB")
    assert info is not None and info.synthetic and "seed=7" in info.detail
    assert "planted effect: 1-day reversal of idiosyncratic returns (reversal 0.08) and a pull of each price toward " \
           "its level (0.02 a day, half-life 35 sessions)" in info.detail
    before = store.fingerprint("VCB")

    assert main(argv) == 0
    assert "VCB: 80 rows written, 0 new days" in capsys.readouterr().out
    assert store.load("VCB").height == 80
    assert store.fingerprint("VCB") == before


@pytest.fixture
def parquet_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(f"data:\n  prices_path: {tmp_path / 'prices'}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("edge, reversal, structure, pull, effect", [
    (None, DEMO_REVERSAL, False, DEMO_PULL, "(reversal 0.08) and a pull of each price toward its level"),
    ("reversal", DEMO_REVERSAL, False, 0.0, f"(reversal 0.08, mean daily IC about {DEMO_REVERSAL_IC}); nothing else"),
    ("null", 0.0, False, 0.0, "planted effect: none; nothing else to predict"),
    ("none", 0.0, True, 0.0, "planted effect: none; the market's own structure kept"),
])
def test_demo_edge_option_plants_the_effect_and_names_it(
    parquet_config: Path, edge: str | None, reversal: float, structure: bool, pull: float, effect: str
) -> None:
    argv = ["demo", "--symbols", "VCB,FPT", "--days", "60", "--seed", "3", "--end", "2024-06-28"]
    assert main([*argv, *(["--edge", edge] if edge else []), "--config", str(parquet_config)]) == 0
    store = open_price_store(load_settings(parquet_config).data)
    expected = synthetic_market(["VCB", "FPT"], 60, 3, date(2024, 6, 28), reversal=reversal, structure=structure,
                                pull=pull)
    for symbol in ("VCB", "FPT"):
        assert_frame_equal(store.load(symbol), expected[symbol])
        info = store.source_info(symbol)
        assert info is not None and info.synthetic and info.detail.startswith("synthetic demo market, seed=3")
        assert effect in info.detail and info.extra["reversal"] == str(reversal)
        assert info.extra["structure"] == str(structure) and info.extra["pull"] == str(pull)


def test_demo_universe_option_writes_the_universe_too(parquet_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--symbols", "VCB,FPT", "--universe", "VN30", "--days", "40", "--end", "2024-06-28",
            "--config", str(parquet_config)]
    assert main(argv) == 0
    store = open_price_store(load_settings(parquet_config).data)
    assert store.symbols() == sorted({"FPT", *load_settings(parquet_config).data.universes["VN30"]})
    assert main([*argv[:4], "NOPE", *argv[5:]]) == 2
    assert "unknown universe 'NOPE': data.universes has VN30" in capsys.readouterr().err


def test_unknown_edge_is_refused(parquet_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--edge", "momentum", "--config", str(parquet_config)])
    assert exited.value.code == 2 and "invalid choice: 'momentum'" in capsys.readouterr().err


@pytest.mark.usefixtures("prefect_harness")
def test_the_planted_effect_reaches_the_reports_data_source_section(parquet_config: Path, tmp_path: Path) -> None:
    from prefect import flow

    from tasks.data.load import describe_sources
    from tasks.delivery.report import ReportRef, report

    argv = ["demo", "--symbols", "VHM", "--days", "30", "--end", "2024-06-28", "--config", str(parquet_config)]
    assert main(argv) == 0
    store = open_price_store(load_settings(parquet_config).data)

    @flow
    def sources_report() -> ReportRef:
        return report("run-1", tmp_path / "reports", [], [], {"data_source": describe_sources(["VHM"], store)}, [])

    try:
        ref = sources_report()
    finally:
        store.close()
    detail = json.loads(ref.json_path.read_text())["data_source"]["VHM"]["detail"]
    assert "planted effect: 1-day reversal" in detail and "a pull of each price toward its level" in detail
    assert "a pull of each price toward its level" in ref.html_path.read_text()


def test_csv_import_and_reimport_adds_nothing(
    config: Path, store: PriceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "fpt.csv"
    index = pd.bdate_range("2024-01-01", periods=60, name="Date")
    frame = pd.DataFrame({"Open": 100.0, "HIGH": 101.0, "low": 99.0, "Close": 100.5, "Volume": 1000},
                         index=index)
    frame.to_csv(file)
    assert main(["csv", str(file), "--symbol", "FPT", "--config", str(config)]) == 0
    assert "FPT: 60 rows written, 60 new days" in capsys.readouterr().out
    assert main(["csv", str(file), "--symbol", "FPT", "--config", str(config)]) == 0
    assert "FPT: 60 rows written, 0 new days" in capsys.readouterr().out
    assert store.load("FPT").height == 60
    info = store.source_info("FPT")
    assert info is not None and not info.synthetic and info.detail == "fpt.csv"

    # A Parquet file with one more day, written by pandas with a Date index.
    longer = tmp_path / "fpt.parquet"
    pd.concat([frame, frame.tail(1).set_axis([index[-1] + pd.offsets.BDay()]).rename_axis("Date")]).to_parquet(longer)
    assert main(["csv", str(longer), "--symbol", "FPT", "--config", str(config)]) == 0
    assert "FPT: 61 rows written, 1 new days" in capsys.readouterr().out


def test_synthetic_and_real_prices_are_not_mixed(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--symbols", "VCB", "--days", "10", "--config", str(config)]) == 0
    file = tmp_path / "vcb.csv"
    file.write_text("date,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\n")
    assert main(["csv", str(file), "--symbol", "VCB", "--config", str(config)]) == 2
    assert "holds synthetic prices" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["csv", "prices.csv", "--symbol", "../x"], "invalid symbol"),
    (["demo", "--symbols", "VCB,../x"], "invalid symbol"),
    (["csv", "missing.csv", "--symbol", "VCB"], "price file not found"),
    (["csv", "prices.txt", "--symbol", "VCB"], "unsupported price file"),
    (["csv", "no_close.csv", "--symbol", "VCB"], "has no close column"),
])
def test_bad_input_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(f"data:\n  prices_path: {tmp_path / 'prices'}\n")
    (tmp_path / "no_close.csv").write_text("Date,Open,High,Low,Volume\n2024-01-02,1,1,1,1\n")
    argv = [str(tmp_path / a) if a.endswith((".csv", ".txt")) else a for a in argv]
    assert main([*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "prices").exists() or ParquetPriceStore(tmp_path / "prices").symbols() == []


def test_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--config", str(tmp_path / "absent.yml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_help_on_every_subcommand_and_no_prefect_import() -> None:
    for command in ([], ["demo"], ["csv"]):
        with pytest.raises(SystemExit) as exited:
            main([*command, "--help"])
        assert exited.value.code == 0
    code = "import sys, flows.ingest; sys.exit('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=False).returncode == 0


def test_bad_bars_are_refused_and_odd_ones_are_said(config: Path, store: PriceStore, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    header_only = tmp_path / "empty.csv"
    header_only.write_text("date,open,high,low,close,volume\n", encoding="utf-8")
    assert main(["csv", str(header_only), "--symbol", "VHM", "--config", str(config)]) == 2
    assert "empty.csv holds no price rows" in capsys.readouterr().err

    rows = [("2024-01-02", 10, 11, 9, 10.5, 100), ("2024-01-03", 10, 11, 9, 10.6, 100),
            ("2024-01-03", 10, 11, 9, 10.7, 200), ("2031-01-06", 10, 11, 9, 10.8, 100)]
    future = tmp_path / "future.csv"
    pd.DataFrame(rows, columns=["date", "open", "high", "low", "close", "volume"]).to_csv(future, index=False)
    assert main(["csv", str(future), "--symbol", "VHM", "--config", str(config)]) == 2
    assert "bar(s) dated after today" in (err := capsys.readouterr().err) and "2031-01-06" in err
    assert store.symbols() == []  # nothing stored

    pd.DataFrame(rows[:3], columns=["date", "open", "high", "low", "close", "volume"]).to_csv(future, index=False)
    assert main(["csv", str(future), "--symbol", "VHM", "--config", str(config)]) == 0
    out = capsys.readouterr()
    assert "1 duplicate date row(s) in the input, the first on 2024-01-03: the last row of each date is kept" in out.out
    assert "VHM: 2 rows written, 2 new days (2024-01-02 to 2024-01-03)" in out.out
    assert store.load("VHM")["close"].to_list() == [10.5, 10.7]
    assert "warning:" not in out.err  # the shipped window starts 2020-01-01


def test_history_outside_the_configured_window_is_warned_about(config: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from backtesting.test import GOOG

    path = tmp_path / "goog.csv"
    GOOG.to_csv(path)
    assert main(["csv", str(path), "--symbol", "GOOG", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert ("warning: none of GOOG's 2148 stored bars (2004-08-19..2013-03-01) lies in data.start_date..data.end_date"
            " = 2020-01-01..newest") in err and "STOCK_AI_DATA__START_DATE=2004-08-19" in err
