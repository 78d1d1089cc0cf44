from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

from schemas import CleaningReport
from tasks.data.clean import Cleaned
from tasks.operations.caching import ModuleSources, frame_digest, module_digest, stable_token


def test_equal_frames_share_a_digest_and_any_change_alters_it() -> None:
    a = pl.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "b", "c"]})
    assert frame_digest(a) == frame_digest(a.clone())
    assert frame_digest(a) != frame_digest(a.with_columns(pl.col("x").add(1e-12)))
    assert frame_digest(a) != frame_digest(a.head(2))
    assert frame_digest(a) != frame_digest(a.rename({"x": "z"}))
    assert frame_digest(a) != frame_digest(a.with_columns(pl.col("x").cast(pl.Float32)))


def test_tokens_reach_into_dataclasses() -> None:
    frame = pl.DataFrame({"x": [1.0]})
    report = CleaningReport(symbol="VCB", rows_in=1, rows_out=1)
    same = stable_token(Cleaned(frame=frame, report=report))
    assert same == stable_token(Cleaned(frame=frame.clone(), report=report))
    assert same != stable_token(Cleaned(frame=frame.with_columns(pl.lit(2.0).alias("x")), report=report))


def test_module_sources_key_changes_with_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "feature_code_probe.py"
    module.write_text("def f(x):\n    return x + 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    policy = ModuleSources(modules=("feature_code_probe",))
    before = policy.compute_key(None, {}, {})  # type: ignore[arg-type]
    module.write_text("def f(x):\n    return x + 2\n", encoding="utf-8")
    module_digest.cache_clear()
    after = policy.compute_key(None, {}, {})  # type: ignore[arg-type]
    assert before != after
    sys.modules.pop("feature_code_probe", None)


def test_prune_cache_removes_old_results_then_the_oldest_beyond_the_size(tmp_path: Path) -> None:
    import os

    from tasks.operations.caching import prune_cache

    now = 1_800_000_000.0
    ages_days = {"a": 40, "b": 10, "c": 5, "d": 1}
    for name, age in ages_days.items():
        path = tmp_path / name
        path.write_bytes(b"x" * 1024 * 1024)  # 1 MB each
        os.utime(path, (now - age * 86400, now - age * 86400))

    pruned = prune_cache(tmp_path, max_age_days=30, max_mb=2.5, now=now)

    # a is too old; then b goes, the oldest left, until 2 MB <= 2.5 MB remain.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d"]
    assert (pruned.removed, pruned.freed_mb, pruned.kept_mb) == (2, 2.0, 2.0)
    assert prune_cache(tmp_path, 30, 2.5, now=now).removed == 0
    assert prune_cache(tmp_path / "missing", 30, 2.5).removed == 0


@pytest.mark.usefixtures("prefect_harness")
def test_the_data_pipeline_prunes_the_cache_it_writes_to(tmp_path: Path) -> None:
    import os

    from flows.data_pipeline import data_pipeline
    from settings import load_settings
    from tests.flows.test_training import demo_config

    settings = load_settings(demo_config(tmp_path))
    cache = settings.execution.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    stale, recent = cache / "stale-result", cache / "recent-result"
    stale.write_bytes(b"x")
    recent.write_bytes(b"x")
    os.utime(stale, (0, 0))  # 1970: older than any max age

    data_pipeline(symbols=["VHM"], settings=settings)

    assert not stale.exists() and recent.exists()
