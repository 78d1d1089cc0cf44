"""The model server: the API in-process for the many small cases, a real uvicorn process for restarts."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

import httpx
import numpy as np
import polars as pl
import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas import SYMBOL_PATTERN
from serving import TOKEN_ENV, ServerProcess
from serving.app import create_app
from tests.models.test_contract import FEATURES
from tests.serving.test_package import (
    MAX_BYTES,
    SYMBOL,
    Packaged,
    feature_history,
    make_archive,
    members,
    package_model,
)

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GZIP = {"Content-Type": "application/gzip"}
JSON = {"Content-Type": "application/json"}
MAX_REQUEST_BYTES = 2 * 1024 * 1024
SHORT = 1000  # bytes: no error answer may be longer, whatever the request
ROOT = Path(__file__).resolve().parents[2]

with warnings.catch_warnings():  # starlette now nudges towards httpx2, which the project does not depend on
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Packaged, Packaged]:
    """Versions 1 and 2 of the same symbol's model, packaged with the same history."""
    root, history = tmp_path_factory.mktemp("packages"), feature_history()
    return package_model(root, history, iterations=30), package_model(root, history, iterations=60)


def new_client(state_dir: Path, max_bytes: int = MAX_BYTES, max_request_bytes: int = MAX_REQUEST_BYTES) -> TestClient:
    return TestClient(create_app("staging", state_dir, TOKEN, max_bytes, max_request_bytes))


@pytest.fixture(scope="module")
def client(packages: tuple[Packaged, Packaged], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A staging server with version 1 deployed."""
    with new_client(tmp_path_factory.mktemp("state")) as test_client:
        response = test_client.post("/v1/deployments", content=packages[0].archive.read_bytes(),
                                    headers={**AUTH, **GZIP})
        assert response.status_code == 201, response.text
        yield test_client


def local_predictions(packaged: Packaged, rows: pl.DataFrame) -> np.ndarray:
    """What the same model predicts offline, with the packaged history before `rows` as context."""
    context = packaged.history.filter(pl.col("date") < rows["date"].min())
    return packaged.model.predict(rows, context)


def as_json_rows(frame: pl.DataFrame) -> list[dict[str, object]]:
    return [{"date": row["date"].isoformat(), **{f: row[f] for f in FEATURES}} for row in frame.iter_rows(named=True)]


def test_health_listing_and_request_log(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="serving"):
        assert client.get("/health").json() == {"status": "ok", "stage": "staging", "models": 1}
    assert any(r.getMessage().startswith("GET /health 200 ") and r.getMessage().endswith("ms")
               for r in caplog.records)
    listing = client.get("/v1/models").json()
    assert listing["stage"] == "staging" and set(listing["models"]) == {SYMBOL}
    assert listing["models"][SYMBOL] | {"deployed_at": None} == {
        "model_type": "catboost", "version": 1, "data_hash": "d" * 64, "deployed_at": None}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": TOKEN}])
def test_deployments_need_the_token(client: TestClient, packages: tuple[Packaged, Packaged],
                                    headers: dict[str, str]) -> None:
    response = client.post("/v1/deployments", content=packages[1].archive.read_bytes(), headers={**headers, **GZIP})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert client.post(f"/v1/rollback/{SYMBOL}", headers=headers).status_code == 401
    assert client.get("/v1/models").json()["models"][SYMBOL]["version"] == 1


def test_predictions_equal_local_ones(client: TestClient, packages: tuple[Packaged, Packaged]) -> None:
    packaged = packages[0]
    latest = client.post("/v1/predict", json={"symbol": SYMBOL, "rows": "latest"}).json()
    newest = packaged.history.tail(1)
    assert latest["symbol"] == SYMBOL and (latest["model_type"], latest["version"]) == ("catboost", 1)
    assert [p["date"] for p in latest["predictions"]] == [newest["date"][0].isoformat()]
    np.testing.assert_allclose([p["prediction"] for p in latest["predictions"]],
                               local_predictions(packaged, newest), rtol=0, atol=1e-9)

    rows = packaged.history.slice(200, 25).select("date", *FEATURES)
    answer = client.post("/v1/predict", json={"symbol": SYMBOL, "rows": as_json_rows(rows)}).json()
    assert [p["date"] for p in answer["predictions"]] == [d.isoformat() for d in rows["date"]]
    np.testing.assert_allclose([p["prediction"] for p in answer["predictions"]], local_predictions(packaged, rows),
                               rtol=0, atol=1e-9)


def test_prediction_errors(client: TestClient) -> None:
    row = {"date": "2026-01-05", "r0": 0.01, "r1": -0.02, "noise": 0.0}
    cases: list[tuple[object, int, str]] = [
        ({"symbol": "VIC", "rows": "latest"}, 404, "no model deployed for VIC"),
        ({"symbol": "../etc", "rows": "latest"}, 422, "invalid symbol"),
        ({"symbol": SYMBOL}, 422, "missing"),
        ({"symbol": SYMBOL, "rows": "oldest"}, 422, "latest"),
        ({"symbol": SYMBOL, "rows": []}, 422, "at least 1"),
        ({"symbol": SYMBOL, "rows": "latest", "extra": 1}, 422, "unknown field (expected: symbol, rows)"),
        ({"symbol": SYMBOL, "rows": [{"date": "2026-01-05", "r0": 0.1}]}, 422, "feature(s): r1, noise"),
        ({"symbol": SYMBOL, "rows": [{**row, "r1": "high"}]}, 422, "'r1' must be a number"),
        ({"symbol": SYMBOL, "rows": [{**row, "date": "05/01/2026"}]}, 422, "ISO date"),
        ({"symbol": SYMBOL, "rows": [row, {**row, "date": "2026-01-02"}]}, 422, "increasing"),
        ({"symbol": SYMBOL, "rows": [{**row, "label": "up"}]}, 422, "'label' must be a number"),
        ({"symbol": SYMBOL, "rows": [{**row, "r0": None}]}, 422, "'r0' must be a number"),
    ]
    for body, status, detail in cases:
        response = client.post("/v1/predict", json=body)
        assert response.status_code == status, (body, response.text)
        assert detail in response.text, (body, response.text)
    not_json = client.post("/v1/predict", content=b"{not json", headers=JSON)
    assert not_json.status_code == 422
    # Numbers JSON can carry but a float cannot: overflow to inf, NaN/Infinity literals, huge integers.
    for value, label in [("1e400", ""), ("-1e400", ""), ("NaN", ""), ("Infinity", ""), ("-Infinity", ""),
                         ("1" + "0" * 400, ""), ("0.1", ', "label": 1e400'), ("0.1", ', "label": NaN')]:
        row_text = f'{{"date": "2026-01-05", "r0": {value}, "r1": 0.1, "noise": 0.0{label}}}'
        body = f'{{"symbol": "{SYMBOL}", "rows": [{row_text}]}}'
        response = client.post("/v1/predict", content=body.encode(), headers=JSON)
        assert response.status_code == 422, (body, response.text)
        assert "must be a number in every row (finite" in response.text, (body, response.text)
    # Known outcomes may ride along (models that read past labels use them); unknown ones are null.
    labelled = client.post("/v1/predict", json={"symbol": SYMBOL, "rows": [{**row, "label": None}, {
        **row, "date": "2026-01-06", "label": 0.01}]})
    assert labelled.status_code == 200 and len(labelled.json()["predictions"]) == 2


def test_bad_packages_are_refused(client: TestClient, packages: tuple[Packaged, Packaged], tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    garbage = client.post("/v1/deployments", content=b"\x1f\x8b not really", headers={**AUTH, **GZIP})
    assert garbage.status_code == 400 and "not a gzip-compressed tar archive" in garbage.json()["detail"]
    wrong_type = client.post("/v1/deployments", content=b"{}", headers={**AUTH, "Content-Type": "application/json"})
    assert wrong_type.status_code == 415
    with new_client(tmp_path / "small", max_bytes=1000) as small:
        data = packages[0].archive.read_bytes()
        too_large = small.post("/v1/deployments", content=data, headers={**AUTH, **GZIP})
        assert too_large.status_code == 413 and "over the limit of 1000" in too_large.json()["detail"]
        chunked = small.post("/v1/deployments", content=iter([data[:600], data[600:]]), headers={**AUTH, **GZIP})
        assert chunked.status_code == 413  # no Content-Length: cut off while streaming
        assert small.get("/health").json()["models"] == 0

    # A package that is intact but holds a model that cannot load never replaces the live one.
    files = members(packages[1].archive)
    files["model/model.cbm"] = b"not a catboost model"
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["model/model.cbm"] = hashlib.sha256(files["model/model.cbm"]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()
    state_dir = client.app.state.slots.root  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="serving"):
        broken = client.post("/v1/deployments", content=make_archive(files), headers={**AUTH, **GZIP})
    # What failed, in words; the slot path and the library's source location stay in the server log.
    assert broken.status_code == 400, broken.text
    assert broken.json()["detail"].startswith("package rejected: model package failed to load: ModelError: ")
    assert "/" not in broken.json()["detail"] and "Traceback" not in broken.text and len(broken.content) < SHORT
    assert any(str(state_dir) in r.getMessage() and r.exc_info for r in caplog.records)
    assert client.get("/v1/models").json()["models"][SYMBOL]["version"] == 1
    assert len(list((state_dir / "slots" / SYMBOL).iterdir())) == 1

    # Per-date statistics only extend a cross-sectional pooled model; beside any other model they are refused.
    files = members(packages[1].archive)
    files["cross_section.parquet"] = b"PAR1 statistics PAR1"
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["cross_section.parquet"] = hashlib.sha256(files["cross_section.parquet"]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()
    stray = client.post("/v1/deployments", content=make_archive(files), headers={**AUTH, **GZIP})
    assert stray.status_code == 400 and "cross_section.parquet: the model is not cross-sectional" in stray.text
    assert client.get("/v1/models").json()["models"][SYMBOL]["version"] == 1


def test_large_and_hostile_bodies_get_short_answers(client: TestClient) -> None:
    """Nothing sent is echoed back, and a body over the limit is refused before it is parsed."""
    big = 1024 * 1024  # under MAX_REQUEST_BYTES: parsed, then refused by validation
    row = {"date": "2026-01-05", "r0": 0.01, "r1": -0.02, "noise": 0.0}
    invalid: list[object] = [
        {"symbol": "A" * big, "rows": "latest"},
        {"symbol": SYMBOL, "rows": [[0.5] * 30] * 10_000},
        {"symbol": SYMBOL, "rows": [{"pad": "x" * 120}] * 10_001},  # over MAX_ROWS
        {"symbol": SYMBOL, "rows": "latest", "x" * big: 1},
        {"symbol": SYMBOL, "rows": [{**row, "r0": "x" * big}]},
        {"symbol": SYMBOL, "rows": [{**row, "date": "x" * big}]},
    ]
    for body in invalid:
        content = json.dumps(body).encode()
        assert big < len(content) < MAX_REQUEST_BYTES
        response = client.post("/v1/predict", content=content, headers=JSON)
        assert response.status_code == 422 and len(response.content) < SHORT, (response.status_code,
                                                                                len(response.content))
    errors = client.post("/v1/predict", json=invalid[1]).json()
    assert "input" not in errors["detail"][0] and len(errors["detail"]) <= 5 and errors["more_errors"] > 0

    over = json.dumps({"symbol": SYMBOL, "rows": [row] * 40_000}).encode()
    assert len(over) > MAX_REQUEST_BYTES
    for sent in (over, iter([over[i:i + 65536] for i in range(0, len(over), 65536)])):  # sized, then chunked
        response = client.post("/v1/predict", content=sent, headers=JSON)
        assert response.status_code == 413 and len(response.content) < SHORT, (response.status_code,
                                                                                response.text[:200])
        assert response.json() == {"detail": f"request body is over the limit of {MAX_REQUEST_BYTES} bytes"}
    assert client.post("/v1/predict", json={"symbol": SYMBOL, "rows": "latest"}).status_code == 200


HOSTILE = "<script>alert(1)</script>"
MARKUP = "ab<script>"
FORGED_LINE = "AB\nPOST forged 201"
DECLARED = {"body", "symbol", "rows"}  # what PredictRequest's errors may name


def server_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "serving"]


def assert_nothing_echoed(texts: list[str], *sent: str) -> None:
    for text in texts:
        assert not any(part in text for part in sent), text
        assert "\n" not in text and "<" not in text, text


def test_an_invalid_symbol_is_answered_with_the_rule_not_the_symbol(client: TestClient,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    rule = f"invalid symbol: must match {SYMBOL_PATTERN.pattern}"
    with caplog.at_level(logging.INFO, logger="serving"):
        predict = client.post("/v1/predict", json={"symbol": HOSTILE, "rows": "latest"})
        rollback = client.post(f"/v1/rollback/{quote(MARKUP)}", headers=AUTH)
        forged = client.post(f"/v1/rollback/{quote(FORGED_LINE)}", headers=AUTH)
        nowhere = client.get(f"/{quote(HOSTILE + FORGED_LINE, safe='')}")
    for response in (predict, rollback, forged):
        assert response.status_code == 422 and response.json()["detail"].startswith(rule), response.text
    assert nowhere.status_code == 404
    assert_nothing_echoed([r.text for r in (predict, rollback, forged, nowhere)], "<script>", "alert", "ab<", "forged")
    # The server's log names the rule too; a path is logged percent-encoded, so it adds no markup and no line.
    logged = server_log(caplog)
    assert sum(rule in line for line in logged) == 3
    assert_nothing_echoed(logged, HOSTILE, MARKUP, FORGED_LINE, "POST forged")


def test_an_unknown_body_field_is_named_by_what_was_expected_not_by_its_key(client: TestClient,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    secret = secrets.token_hex(24)
    with caplog.at_level(logging.INFO, logger="serving"):
        answers = [client.post("/v1/predict", json={"symbol": SYMBOL, "rows": "latest", key: 1})
                   for key in ("<img src=x>", secret, "rows\nforged")]
        typed = client.post("/v1/predict", json={"symbol": 5, "rows": [[1]], "<img src=x>": {"a": 1}})
    for response in answers:
        assert response.status_code == 422
        assert response.json() == {"detail": [{"loc": ["body"], "msg": "unknown field (expected: symbol, rows)",
                                               "type": "extra_forbidden"}]}
    assert typed.status_code == 422
    for error in typed.json()["detail"]:  # positions and declared names only, never a union tag or a key
        assert all(isinstance(part, int) or part in DECLARED for part in error["loc"]), error
    assert_nothing_echoed([r.text for r in (*answers, typed)], "<img", secret, "forged")
    assert_nothing_echoed(server_log(caplog), "<img", secret, "forged")


class Leg(BaseModel):
    kind: Literal["stock"]
    weight: float


class Cash(BaseModel):
    kind: Literal["cash"]


class Basket(BaseModel):
    """A body whose errors pydantic words with the input: a custom check and a discriminated union."""

    model_config = ConfigDict(extra="forbid")

    name: str
    legs: list[Annotated[Leg | Cash, Field(discriminator="kind")]]

    @field_validator("name")
    @classmethod
    def _plain(cls, value: str) -> str:
        if not value.isalnum():
            raise ValueError(f"{value} is not a plain name")
        return value


def test_validation_messages_never_quote_the_input(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app("staging", tmp_path, TOKEN, MAX_BYTES, MAX_REQUEST_BYTES)

    @app.post("/v1/basket")
    def basket(body: Basket) -> dict[str, str]:
        return {"name": body.name}

    with TestClient(app) as api, caplog.at_level(logging.INFO, logger="serving"):
        response = api.post("/v1/basket", json={"name": "<b>bold</b>", "legs": [
            {"kind": "stock", "weight": 1.0, "<u>": 1}, {"kind": "<i>tag</i>"}, {"kind": "stock", "weight": "<s>"}],
            "<em>": 1})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "name"], "msg": "value error", "type": "value_error"},
        {"loc": ["body", "legs", 1], "msg": "union tag invalid", "type": "union_tag_invalid"},
        {"loc": ["body", "legs", 2, "weight"], "type": "float_parsing",
         "msg": "Input should be a valid number, unable to parse string as a number"},
        {"loc": ["body"], "msg": "unknown field (expected: name, legs)", "type": "extra_forbidden"}]
    assert_nothing_echoed([response.text, *server_log(caplog)], "<b>", "bold", "<i>", "tag</i>", "<s>", "<em>")


def test_a_corrupt_history_file_is_named_and_leaves_no_slot(packages: tuple[Packaged, Packaged],
                                                            tmp_path: Path) -> None:
    with new_client(tmp_path) as api:
        assert api.post("/v1/deployments", content=packages[0].archive.read_bytes(),
                        headers={**AUTH, **GZIP}).status_code == 201
        history = tmp_path / "history" / f"{SYMBOL}.json"
        for content, problem in [("{corrupt", "is corrupt (JSONDecodeError"), ('{"slot": 1}', "is not a list")]:
            history.write_text(content)
            for response in (api.post("/v1/deployments", content=packages[1].archive.read_bytes(),
                                      headers={**AUTH, **GZIP}),
                             api.post(f"/v1/rollback/{SYMBOL}", headers=AUTH)):
                assert response.status_code == 500, response.text
                detail = response.json()["detail"]
                assert f"server state file history/{SYMBOL}.json {problem}" in detail and str(tmp_path) not in detail
            assert len(list((tmp_path / "slots" / SYMBOL).iterdir())) == 1  # the new package's slot is gone
            assert api.get("/v1/models").json()["models"][SYMBOL]["version"] == 1
        history.unlink()
        assert api.post("/v1/deployments", content=packages[1].archive.read_bytes(),
                        headers={**AUTH, **GZIP}).status_code == 201


def test_a_damaged_slot_is_reported_at_start_up(packages: tuple[Packaged, Packaged], tmp_path: Path) -> None:
    with new_client(tmp_path) as api:
        assert api.post("/v1/deployments", content=packages[0].archive.read_bytes(),
                        headers={**AUTH, **GZIP}).status_code == 201
    (weights,) = tmp_path.glob(f"slots/{SYMBOL}/*/model/model.cbm")
    weights.write_bytes(weights.read_bytes()[:-1])
    with new_client(tmp_path) as api:
        assert api.get("/health").json() == {"status": "degraded", "stage": "staging", "models": 0}
        assert api.post("/v1/predict", json={"symbol": SYMBOL, "rows": "latest"}).status_code == 404
        # Deploying again repairs it.
        assert api.post("/v1/deployments", content=packages[0].archive.read_bytes(),
                        headers={**AUTH, **GZIP}).status_code == 201
        assert api.get("/health").json()["status"] == "ok"


def test_deploy_and_roll_back(packages: tuple[Packaged, Packaged], tmp_path: Path) -> None:
    first, second = packages
    with new_client(tmp_path / "state") as api:
        deployed = [api.post("/v1/deployments", content=p.archive.read_bytes(),
                             headers={**AUTH, "Content-Type": "application/octet-stream"}) for p in packages]
        assert [r.status_code for r in deployed] == [201, 201]
        assert deployed[0].json()["previous"] is None
        assert deployed[1].json() | {"deployed_at": None} == {
            "symbol": SYMBOL, "model_type": "catboost", "version": 2, "data_hash": "d" * 64, "deployed_at": None,
            "previous": {"model_type": "catboost", "version": 1}}
        rows = second.history.slice(220, 5)
        served = api.post("/v1/predict", json={"symbol": SYMBOL, "rows": as_json_rows(rows)}).json()
        assert served["version"] == 2
        np.testing.assert_allclose([p["prediction"] for p in served["predictions"]],
                                   local_predictions(second, rows), rtol=0, atol=1e-9)

        restored = api.post(f"/v1/rollback/{SYMBOL}", headers=AUTH)
        assert restored.status_code == 200
        assert (restored.json()["version"], restored.json()["previous"]) == (1, {"model_type": "catboost",
                                                                                 "version": 2})
        served = api.post("/v1/predict", json={"symbol": SYMBOL, "rows": as_json_rows(rows)}).json()
        assert served["version"] == 1
        np.testing.assert_allclose([p["prediction"] for p in served["predictions"]],
                                   local_predictions(first, rows), rtol=0, atol=1e-9)
        assert api.post(f"/v1/rollback/{SYMBOL}", headers=AUTH).status_code == 409
        assert api.post("/v1/rollback/VIC", headers=AUTH).status_code == 404
        assert api.post("/v1/rollback/bad%20symbol", headers=AUTH).status_code == 422
    # The rolled-back slot is gone; only the live one is left on disk.
    assert len(list((tmp_path / "state" / "slots" / SYMBOL).iterdir())) == 1


def test_cli_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    result = subprocess.run([sys.executable, "-m", "serving", "--stage", "staging", "--state-dir", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and f"set the deployment token in ${TOKEN_ENV}" in result.stderr


def test_real_server_keeps_its_models_across_a_restart(packages: tuple[Packaged, Packaged], tmp_path: Path) -> None:
    state, log = tmp_path / "state", tmp_path / "server.log"
    with ServerProcess("production", state, TOKEN, log_path=log, max_request_bytes=100_000) as server, \
            httpx.Client(base_url=server.url) as http:
        for packaged in packages:  # packages are larger than max_request_bytes: their own limit applies
            response = http.post("/v1/deployments", content=packaged.archive.read_bytes(), headers={**AUTH, **GZIP})
            assert response.status_code == 201, response.text
        over = b"[" + b"0," * 60_000 + b"0]"
        for content in (over, iter([over[:50_000], over[50_000:]])):  # Content-Length, then chunked
            response = http.post("/v1/predict", content=content, headers=JSON)
            assert response.status_code == 413 and "limit of 100000 bytes" in response.text
        before = http.post("/v1/predict", json={"symbol": SYMBOL, "rows": "latest"}).json()
        listing = http.get("/v1/models").json()
    assert server.process is None  # stopped

    with ServerProcess("production", state, TOKEN, log_path=log) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/health").json() == {"status": "ok", "stage": "production", "models": 1}
        assert http.get("/v1/models").json() == listing
        assert http.post("/v1/predict", json={"symbol": SYMBOL, "rows": "latest"}).json() == before
        assert http.post(f"/v1/rollback/{SYMBOL}", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert http.post(f"/v1/rollback/{SYMBOL}", headers=AUTH).json()["version"] == 1  # history survived too
    assert f"POST /v1/rollback/{SYMBOL} -> 401" in log.read_text()  # errors are logged
