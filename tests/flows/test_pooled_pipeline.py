"""Universe (pooled) models through the flows: trained once over every symbol, weighed across the universe by their
daily rank IC, evaluated per symbol on its own test window, deployed per symbol through staging to production like
any model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from flows.data_pipeline import data_pipeline
from flows.deployment_pipeline import deployment_pipeline
from flows.evaluation_pipeline import evaluation_pipeline
from flows.model_pipeline import model_pipeline
from models.pooled import CrossSection, PooledForecaster
from serving import ServerProcess
from settings import Settings, load_settings
from stores.base import SourceInfo
from stores.features import read_split
from stores.parquet import ParquetPriceStore
from stores.registry import LocalModelRegistry
from tasks.data.ingest import synthetic_market
from tasks.evaluation.choose import Decision
from tasks.evaluation.significance import newey_west_lags, newey_west_mean

pytestmark = pytest.mark.usefixtures("prefect_harness")
TOKEN = "test-token-0123456789"
SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("servers")
    with ServerProcess("staging", root / "staging", TOKEN) as staging, \
            ServerProcess("production", root / "production", TOKEN) as production:
        yield {"staging": staging.url, "production": production.url}


def pooled_settings(tmp_path: Path, servers: dict[str, str]) -> Settings:
    settings = load_settings(overrides={
        "data": {"prices_path": str(tmp_path / "prices"), "feature_store_path": str(tmp_path / "features"),
                 "symbols": SYMBOLS, "features": {"windows": [5, 10, 20]}, "split": {"min_rows": 30}},
        "models": {"registry_path": str(tmp_path / "registry"), "model_types": ["catboost"], "scope": "both",
                   "params": {"catboost": {"iterations": 40}}},
        "optimization": {"enabled": False},
        "evaluation": {"cross_validation": {"cv_folds": 3, "pooled_folds": 2}},
        "monitoring": {"history_path": str(tmp_path / "history.sqlite")},
        "execution": {"cache_dir": str(tmp_path / "cache"), "reports_dir": str(tmp_path / "reports")},
        "deployment": {"staging_endpoint": servers["staging"], "production_endpoint": servers["production"],
                       "token": TOKEN, "packages_path": str(tmp_path / "packages"), "retries": 0,
                       "max_p95_ms": 2000}})
    add_days(settings, 0, 500)
    return settings


def add_days(settings: Settings, start: int, stop: int) -> None:
    """Store rows start..stop of a 520-day market (later calls add the days after the earlier ones)."""
    store = ParquetPriceStore(settings.data.prices_path)
    market = synthetic_market(SYMBOLS, 520, seed=3, end=date(2026, 10, 30), reversal=0.04)
    for symbol, bars in market.items():
        store.upsert(symbol, bars.slice(start, stop - start),
                     SourceInfo(kind="synthetic", detail="planted reversal", synthetic=True))


@pytest.mark.long(seconds=22)
def test_a_pooled_model_is_trained_once_evaluated_per_symbol_and_deployed_like_any(
        tmp_path: Path, servers: dict[str, str]) -> None:
    settings = pooled_settings(tmp_path, servers)
    refs = {s.ref.symbol: s.ref for s in data_pipeline(symbols=SYMBOLS, settings=settings)}

    trained = model_pipeline(settings=settings, refs=refs)
    assert sorted((r.symbol, r.model_type) for r in trained.results) == [
        *((s, "catboost") for s in SYMBOLS), ("_POOLED_", "catboost-pooled")]
    registry = LocalModelRegistry(settings.models.registry_path)
    pooled = registry.get("catboost-pooled", "_POOLED_", 1)
    assert pooled.metadata.symbols == SYMBOLS

    evaluated = evaluation_pipeline(refs, settings)
    assert not evaluated.failures
    candidates = {(r.symbol, r.model_type): r for r in evaluated.results}
    assert set(candidates) == {(s, t) for s in SYMBOLS for t in ("catboost", "catboost-pooled")}
    for symbol in SYMBOLS:
        result = candidates[(symbol, "catboost-pooled")]
        test = read_split(refs[symbol], "test")
        # Scored on the symbol's own test window, like its per-symbol rival, with its own CV and p-value.
        assert (result.test_start, result.rows) == (candidates[(symbol, "catboost")].test_start, test.height)
        # A universe model's walk-forward folds are its own (pooled_folds): each refits it on every symbol.
        assert result.cv.folds == 2 and candidates[(symbol, "catboost")].cv.folds == 3
        assert 0.0 <= result.against_baseline.p_value <= 1.0
        model, _ = registry.load("catboost-pooled", symbol, 1)
        offline = model.predict(test, context=read_split(refs[symbol], "all").filter(
            read_split(refs[symbol], "all")["date"] < test["date"].min()))
        np.testing.assert_allclose(result.curves.predicted, offline, rtol=0, atol=1e-12)

    # Across its universe: the mean daily rank IC of its test predictions, with its Newey-West test.
    [evidence] = evaluated.evidence
    pooled_rows = [candidates[(s, "catboost-pooled")] for s in SYMBOLS]
    by_date: dict[date, list[tuple[float, float]]] = {}
    for r in pooled_rows:
        for d, p, a in zip(r.curves.dates, r.curves.predicted, r.curves.actual, strict=True):
            by_date.setdefault(d, []).append((p, a))
    assert all(len(pairs) == len(SYMBOLS) for pairs in by_date.values())  # one calendar: the same test dates
    ics = [spearmanr(*zip(*pairs, strict=True)).statistic for _, pairs in sorted(by_date.items())]
    assert (evidence.model_type, evidence.version, evidence.symbols, evidence.dates) == ("catboost-pooled", 1, 4, 0)
    assert evidence.ic is None and evidence.skipped_dates == len(ics)  # 4 symbols: below universe_min_symbols 5
    tested = newey_west_mean(ics, newey_west_lags(len(ics)))
    four = settings.model_selection.model_copy(update={"universe_min_symbols": 4})
    loose = evaluation_pipeline(refs, settings.model_copy(update={"model_selection": four}))
    [counted] = loose.evidence
    assert counted.ic is not None and counted.dates == len(ics)
    assert counted.ic.mean == pytest.approx(tested.mean, abs=1e-12)
    assert counted.ic.statistic == pytest.approx(tested.statistic, abs=1e-9)

    champion = candidates[("BBB", "catboost-pooled")]
    decision = Decision("BBB", "promote", "catboost-pooled", 1, champion.composite, ("pooled won",))
    [deployed] = deployment_pipeline([decision], refs, settings)
    assert deployed.status == "production", deployed.reason
    assert {c.name for c in deployed.checks if c.passed} >= {"health", "prediction_parity", "latency_p95"}
    served = httpx.get(f"{servers['production']}/v1/models").json()["models"]
    assert {s: (m["model_type"], m["version"]) for s, m in served.items()} == {"BBB": ("catboost-pooled", 1)}
    production = registry.alias("BBB", "production")
    assert production is not None and (production.model_type, production.version) == ("catboost-pooled", 1)

    # The weekly evaluation scores the pooled production model on BBB's newest rows, like any production model,
    # against the score it was deployed with.
    from flows.weekly_evaluation import weekly_evaluation

    weekly = weekly_evaluation(symbols=["BBB"], settings=settings)
    [assessed] = weekly.assessments
    assert (assessed.symbol, assessed.model_type, assessed.version) == ("BBB", "catboost-pooled", 1)
    [check] = weekly.checks
    assert check.model == "catboost-pooled v1" and check.deployment_score == pytest.approx(champion.composite)
    assert np.isfinite(assessed.composite)
    assert assessed.volatility.recent_days == 10 and np.isfinite(assessed.volatility.ratio)

    # A cross-sectional pooled version whose per-date statistics end before its symbols' feature sets do (as when
    # new days arrive and the model is not retrained): every step that predicts a later date takes that date's
    # statistics from the current feature sets of its symbols; the registry version stays as it was stored.
    model, _ = registry.load("catboost-pooled", "_POOLED_", 1)
    assert isinstance(model, PooledForecaster) and model.cross_section is not None
    cut = min(read_split(ref, "val")["date"].max() for ref in refs.values())
    early = PooledForecaster.__new__(type(model))
    early.__dict__.update(model.__dict__)
    early.cross_section = CrossSection(model.pooled, model.cross_section.stats.filter(pl.col("date") <= cut))
    v2 = registry.register(early, "_POOLED_", metrics={}, data_hash=pooled.metadata.data_hash, code_version="c",
                           duration_seconds=0.0)
    stored = {p.name: p.read_bytes() for p in v2.path.iterdir()}
    later = evaluation_pipeline(refs, settings)
    assert not later.failures
    [ccc] = [r for r in later.results if (r.symbol, r.model_type, r.version) == ("CCC", "catboost-pooled", 2)]
    # Statistics added from the feature sets equal those stored with v1, so v2 predicts as v1 did.
    np.testing.assert_allclose(ccc.curves.predicted, candidates[("CCC", "catboost-pooled")].curves.predicted,
                               rtol=0, atol=1e-12)
    [deployed] = deployment_pipeline([Decision("CCC", "promote", "catboost-pooled", 2, ccc.composite, ("x",))],
                                     refs, settings)
    assert deployed.status == "production", deployed.reason
    weekly = weekly_evaluation(symbols=["CCC"], settings=settings)
    assert not weekly.failures and weekly.assessments[0].window_end > cut
    assert {p.name: p.read_bytes() for p in v2.path.iterdir()} == stored
