"""Model-server throughput: concurrent clients posting /v1/predict to a real server for a fixed time.

    python -m benchmarks.serving [--seconds 20] [--clients 8] [--rows 1 | --rows latest]

A small CatBoost model on synthetic AR(1) features is registered, packaged and deployed to a server started
on a free loopback port; the server is stopped at the end. By default every request sends explicit held-out
rows (the model never saw them; successive requests send different ones), so each is a real prediction;
`--rows latest` times the "latest" answer, which the server computes once when the model loads. Prints
requests/s, p50 / p95 / p99 latency and the error count, and exits non-zero when any request failed.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import polars as pl

TOKEN = "benchmark-token"
SYMBOL = "VHM"
FEATURES = ("r0", "r1", "noise")


def feature_history(rows: int, seed: int = 7) -> pl.DataFrame:
    """AR(1) returns as features, the next return as label; the newest row is unlabelled."""
    import polars as pl

    rng = np.random.default_rng(seed)
    r = np.zeros(rows + 2)
    for t in range(1, rows + 2):
        r[t] = 0.7 * r[t - 1] + rng.normal(0, 0.01)
    labels = [*r[2:rows + 1], None]
    return pl.DataFrame({"date": [date(2022, 1, 3) + timedelta(days=i) for i in range(rows)],
                         "r0": r[1:rows + 1], "r1": r[:rows], "noise": rng.normal(0, 0.01, rows),
                         "label": pl.Series(labels, dtype=pl.Float64)})


TRAIN, VAL = (0, 400), (401, 150)
"""(offset, length) of the fitting parts; the rows after them (one embargo row on) are held out."""


def build(root: Path) -> tuple[Path, list[dict[str, object]]]:
    """Register and package a small model; return the archive and the held-out rows as request rows."""
    from models.catboost import CatBoostForecaster, CatBoostParams
    from serving.package import build_package
    from stores.registry import LocalModelRegistry

    history = feature_history(600)
    model = CatBoostForecaster(FEATURES, CatBoostParams(iterations=200, depth=6), horizon=1, seed=1)
    model.fit(history.slice(*TRAIN), history.slice(*VAL))
    entry = LocalModelRegistry(root / "registry").register(model, SYMBOL, metrics={}, data_hash="bench",
                                                           code_version="bench", duration_seconds=0.0)
    archive = build_package(entry.path, history, symbol=SYMBOL, model_type="catboost", version=entry.version,
                            data_hash="bench", out=root)
    held_out = history.slice(sum(VAL) + 1, history.height - sum(VAL) - 2)  # labelled rows after val + embargo
    return archive, [{"date": r["date"].isoformat(), **{f: r[f] for f in FEATURES}}
                     for r in held_out.iter_rows(named=True)]


def bodies(rows: list[dict[str, object]], per_request: int | None) -> list[dict[str, object]]:
    """Request bodies: every window of `per_request` consecutive held-out rows, or "latest" when None."""
    if per_request is None:
        return [{"symbol": SYMBOL, "rows": "latest"}]
    if not 1 <= per_request <= len(rows):
        raise SystemExit(f"--rows must be 'latest' or 1..{len(rows)} (the held-out rows)")
    return [{"symbol": SYMBOL, "rows": rows[i:i + per_request]} for i in range(len(rows) - per_request + 1)]


def hammer(url: str, requests: list[dict[str, object]], seconds: float, clients: int) -> tuple[list[float], int]:
    """`clients` threads, one httpx client each, posting the bodies in turn until time is up: latencies (s), errors."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    deadline = time.perf_counter() + seconds

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            sent = i  # clients start at different bodies
            while time.perf_counter() < deadline:
                body, sent = requests[sent % len(requests)], sent + 1
                start = time.perf_counter()
                try:
                    ok = http.post("/v1/predict", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies[i].append(time.perf_counter() - start)
                errors[i] += not ok

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [x for per_client in latencies for x in per_client], sum(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the clients run (default %(default)s)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default %(default)s)")
    parser.add_argument("--rows", type=lambda v: None if v == "latest" else int(v), default=1, metavar="N|latest",
                        help="held-out rows sent per request, or 'latest' for the answer the server precomputes "
                             "at load time (default %(default)s)")
    parser.add_argument("--log-level", default="info", help="server log level; info logs every request")
    args = parser.parse_args(argv)

    import httpx

    from serving import ServerProcess

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        archive, rows = build(root)
        requests = bodies(rows, args.rows)
        with ServerProcess("benchmark", root / "state", TOKEN, log_path=root / "server.log",
                           log_level=args.log_level) as server:
            deployed = httpx.post(f"{server.url}/v1/deployments", content=archive.read_bytes(), timeout=60,
                                  headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/gzip"})
            deployed.raise_for_status()
            hammer(server.url, requests, min(2.0, args.seconds), args.clients)  # warm-up, not counted
            latencies, errors = hammer(server.url, requests, args.seconds, args.clients)
    ms = np.asarray(latencies) * 1000
    print(f"model server: {args.clients} clients, {args.seconds:g} s, "
          + ("'latest' (precomputed) per request" if args.rows is None
             else f"{args.rows} held-out row(s) per request, {len(requests)} different requests"))
    print(f"  requests/s  {len(latencies) / args.seconds:10.1f}   ({len(latencies)} requests)")
    print(f"  p50 latency {np.percentile(ms, 50):10.2f} ms")
    print(f"  p95 latency {np.percentile(ms, 95):10.2f} ms")
    print(f"  p99 latency {np.percentile(ms, 99):10.2f} ms")
    print(f"  errors      {errors:10d}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
