"""The model server's HTTP API (FastAPI): health, model listing, deployments, rollback and predictions.

Deployments and rollbacks need the bearer token; predictions and reads do not. Errors answer
`{"detail": "..."}`: 400 bad package, 401 token, 404 nothing deployed, 409 nothing to roll back,
413 package or request body too large, 415 wrong content type, 422 bad request body or rows, 500 unreadable
server state. Answers never echo the request and stay short (a few hundred bytes), whatever was sent.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import polars as pl
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.base import LABEL
from schemas import SYMBOL_PATTERN, InvalidSymbolError, validate_symbol
from serving import DEFAULT_MAX_REQUEST_BYTES
from serving.package import PackageError, PackageTooLargeError
from serving.request_errors import validation_errors
from serving.state import DeployedModel, ModelSlots, NotDeployedError, NothingToRollBackError, RowsError, StateError

__all__ = ["MAX_ROWS", "PACKAGE_CONTENT_TYPES", "PredictRequest", "create_app"]

log = logging.getLogger("serving")
MAX_ROWS = 10_000
MAX_DETAIL_CHARS = 300
DEPLOYMENTS_PATH = "/v1/deployments"
PACKAGE_CONTENT_TYPES = ("application/gzip", "application/x-gzip", "application/octet-stream")
INVALID_SYMBOL = f"invalid symbol: must match {SYMBOL_PATTERN.pattern} (upper-case letters, digits, . _ -)"
MAX_LOGGED_PATH_CHARS = 120


class PredictRequest(BaseModel):
    """`POST /v1/predict`: a symbol and either "latest" or rows carrying `date` and every model feature."""

    model_config = ConfigDict(extra="forbid")

    symbol: str
    rows: Literal["latest"] | Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_ROWS)]


class _RequestLog:
    """One log line per request (method, path, status, ms); unhandled errors logged and answered 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status, started = time.perf_counter(), 500, False

        async def send_status(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            log.exception("%s %s failed", scope["method"], _logged_path(scope["path"]))
            if started:  # too late for a clean 500: let the server close the connection
                raise
            await JSONResponse({"detail": "internal server error"}, status_code=500)(scope, receive, send)
        finally:
            log.info("%s %s %d %.1fms", scope["method"], _logged_path(scope["path"]), status,
                     (time.perf_counter() - start) * 1000)


class _BodyLimit:
    """413 for a request body over `max_bytes`, decided before anything parses it.

    A Content-Length over the limit is refused unread; a body without one (chunked) is counted while it
    arrives and refused as soon as it passes the limit. The package upload checks its own, larger limit
    after the token, so it is let through.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == DEPLOYMENTS_PATH:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        log.warning("%s %s -> 413: body over %d bytes", scope["method"], _logged_path(scope["path"]), self.max_bytes)
        answer = JSONResponse({"detail": f"request body is over the limit of {self.max_bytes} bytes"}, 413)
        await answer(scope, receive, send)


def _clip(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _logged_path(path: str) -> str:
    """The request path as the log shows it: percent-encoded, so a path cannot add a line or markup to the log."""
    return _clip(quote(path, safe="/"), MAX_LOGGED_PATH_CHARS)


def _bearer(token: str) -> Callable[[str | None], None]:
    expected = token.encode()

    def check(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        # compare_digest takes as long for a near miss as for a wild guess: no timing oracle.
        if not (hmac.compare_digest(given.strip().encode(), expected) and scheme.lower() == "bearer"):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    return check


def _described(model: DeployedModel) -> dict[str, Any]:
    return {"model_type": model.model_type, "version": model.version, "data_hash": model.data_hash,
            "deployed_at": model.deployed_at.isoformat()}


def _deployment(model: DeployedModel) -> dict[str, Any]:
    previous = model.previous
    return {"symbol": model.symbol, **_described(model),
            "previous": {"model_type": previous.model_type, "version": previous.version} if previous else None}


def _symbol(symbol: str) -> str:
    """The symbol, validated: refused with the rule it broke, never with the symbol itself.

    Quoting it would hand a client's markup back in the answer and let it write into the server log.
    """
    try:
        return validate_symbol(symbol)
    except InvalidSymbolError:
        raise HTTPException(422, INVALID_SYMBOL) from None


def _rows_frame(rows: list[dict[str, Any]], features: tuple[str, ...]) -> pl.DataFrame:
    """JSON rows as a frame: `date` parsed, features (and `label` when sent) as Float64."""
    missing = [name for name in ("date", *features) if any(name not in row for row in rows)]
    if missing:
        raise RowsError(f"rows lack the model feature(s): {', '.join(missing)}")
    try:
        dates = [date.fromisoformat(row["date"]) for row in rows]
    except (TypeError, ValueError):
        raise RowsError("every row needs `date` as an ISO date string (YYYY-MM-DD)") from None
    columns: dict[str, list[Any]] = {name: [row[name] for row in rows] for name in features}
    if any(LABEL in row for row in rows):
        columns[LABEL] = [row.get(LABEL) for row in rows]
    numbers: dict[str, list[float | None]] = {}
    for name, values in columns.items():
        try:  # known outcomes may be null (not known yet); features may not
            numbers[name] = [None if v is None and name == LABEL else _finite(v) for v in values]
        except (TypeError, ValueError, OverflowError):
            allowed = "finite or null" if name == LABEL else "finite, not null"
            raise RowsError(f"feature {name!r} must be a number in every row ({allowed})") from None
    return pl.DataFrame({"date": dates, **{n: pl.Series(n, v, dtype=pl.Float64) for n, v in numbers.items()}})


def _finite(value: Any) -> float:
    """A JSON number as a finite float: NaN, Infinity, 1e400 and integers beyond float range are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {type(value).__name__}")
    number = float(value)  # OverflowError for integers past 1.8e308
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def create_app(stage: str, state_dir: Path, token: str, max_package_bytes: int,
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> FastAPI:
    """The server for one stage, serving the models deployed under `state_dir`.

    Args:
        max_package_bytes: largest deployment package, compressed or unpacked.
        max_request_bytes: largest body of any other request (predictions), refused with 413 unparsed.
    """
    if not token:
        raise ValueError("a non-empty deployment token is required")
    if max_package_bytes <= 0 or max_request_bytes <= 0:
        raise ValueError("size limits must be positive")
    slots = ModelSlots(state_dir)
    app = FastAPI(title=f"stock-ai model server ({stage})")
    app.state.slots = slots
    app.add_middleware(_BodyLimit, max_bytes=max_request_bytes)
    app.add_middleware(_RequestLog)  # outermost: logs the 413s too
    authorized = [Depends(_bearer(token))]

    @app.exception_handler(StarletteHTTPException)
    async def log_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = _clip(exc.detail) if isinstance(exc.detail, str) else exc.detail
        log.warning("%s %s -> %d: %s", request.method, _logged_path(request.scope["path"]), exc.status_code, detail)
        return await http_exception_handler(request, StarletteHTTPException(exc.status_code, detail, exc.headers))

    @app.exception_handler(RequestValidationError)
    async def log_invalid_request(request: Request, exc: RequestValidationError) -> Response:
        answer = validation_errors(exc, request.scope.get("route"))
        log.warning("%s %s -> 422: %s", request.method, _logged_path(request.scope["path"]), answer)
        return JSONResponse(answer, status_code=422)

    @app.get("/health")
    def health() -> dict[str, Any]:
        # "degraded": a model deployed earlier could not be loaded at start-up (see the log).
        return {"status": "degraded" if slots.errors else "ok", "stage": stage, "models": len(slots.all())}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"stage": stage, "models": {s: _described(m) for s, m in slots.all().items()}}

    @app.post(DEPLOYMENTS_PATH, status_code=201, dependencies=authorized)
    async def deploy(request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in PACKAGE_CONTENT_TYPES:
            raise HTTPException(415, f"send the package as one of {', '.join(PACKAGE_CONTENT_TYPES)}")
        length = request.headers.get("content-length", "")  # checked here, after the token (see _BodyLimit)
        if length.isdigit() and int(length) > max_package_bytes:
            raise HTTPException(413, f"package is over the limit of {max_package_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_package_bytes:
                raise HTTPException(413, f"package is over the limit of {max_package_bytes} bytes")
        try:
            deployed = await run_in_threadpool(slots.deploy, bytes(body), max_package_bytes)
        except PackageTooLargeError as exc:
            raise HTTPException(413, str(exc)) from None
        except PackageError as exc:
            raise HTTPException(400, f"package rejected: {exc}") from None
        except StateError as exc:
            raise HTTPException(500, str(exc)) from None
        return _deployment(deployed)

    @app.post("/v1/rollback/{symbol}", dependencies=authorized)
    def rollback(symbol: str) -> dict[str, Any]:
        try:
            return _deployment(slots.rollback(_symbol(symbol)))
        except NotDeployedError as exc:
            raise HTTPException(404, str(exc)) from None
        except NothingToRollBackError as exc:
            raise HTTPException(409, str(exc)) from None
        except StateError as exc:
            raise HTTPException(500, str(exc)) from None

    @app.post("/v1/predict")
    def predict(body: PredictRequest) -> Response:
        symbol = _symbol(body.symbol)
        deployed = slots.get(symbol)
        if deployed is None:
            raise HTTPException(404, f"no model deployed for {symbol}")
        try:
            rows = None if body.rows == "latest" else _rows_frame(body.rows, deployed.features)
            predictions, model, dates = slots.predict(symbol, rows)
        except NotDeployedError as exc:
            raise HTTPException(404, str(exc)) from None
        except RowsError as exc:
            raise HTTPException(422, str(exc)) from None
        return JSONResponse({
            "symbol": symbol, "model_type": model.model_type, "version": model.version,
            "predictions": [{"date": d.isoformat(), "prediction": float(p)} for d, p in zip(dates, predictions,
                                                                                             strict=True)]})

    return app
