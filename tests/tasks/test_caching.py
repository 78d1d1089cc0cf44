from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

from schemas import CleaningReport
from tasks.caching import ModuleSources, frame_digest, module_digest, stable_token
from tasks.clean import Cleaned


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
