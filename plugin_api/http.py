"""HTTP plumbing shared by the routes: the one error → status map, API keys, metrics, limits."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from indexer.errors import (
    BackendUnavailableError,
    BadInputError,
    IndexMismatchError,
    NotFoundError,
    OverloadedError,
    ShoprankError,
)

log = logging.getLogger(__name__)

# The one place domain errors become HTTP statuses (most specific class first).
STATUS: tuple[tuple[type[ShoprankError], int], ...] = (
    (BadInputError, 422),
    (NotFoundError, 404),
    (OverloadedError, 429),
    (BackendUnavailableError, 503),
    (IndexMismatchError, 503),
)


class Unauthorized(ShoprankError):
    """A write without a valid API key (HTTP 401)."""


def status_of(exc: ShoprankError) -> int:
    if isinstance(exc, Unauthorized):
        return 401
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def check_api_key(presented: str | None, keys: tuple[str, ...]) -> None:
    """Constant-time comparison against every configured key; the key itself is never logged."""
    if not keys:
        raise Unauthorized("writes are disabled: this service has no API keys (set SHOPRANK_API_KEYS)")
    if not presented:
        raise Unauthorized("this endpoint needs an API key in the X-API-Key header")
    given = presented.encode()
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(given, k.encode())
    if not ok:
        raise Unauthorized("the X-API-Key header does not hold a valid key")


class Metrics:
    """Prometheus counters and histograms in a registry of this app (no process globals)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shoprank_requests", "HTTP requests", ["endpoint", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "shoprank_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.stages = Histogram(
            "shoprank_stage_seconds",
            "time per ranking stage",
            ["stage"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stages.labels(stage).observe(ms / 1000.0)

    def render(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _error(status: int, message: str, detail: Any = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status_code=status)


def install(app: FastAPI, *, max_inflight: int, max_body_bytes: int) -> None:
    """Error handlers, the overload guard, the body-size guard and request metrics."""

    @app.exception_handler(ShoprankError)
    async def _domain(request: Request, exc: ShoprankError) -> JSONResponse:
        code = status_of(exc)
        if code >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return _error(code, str(exc), getattr(exc, "problems", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = fields[0] if fields else {"field": "", "message": "invalid request"}
        return _error(422, f"{first['field']}: {first['message']}", fields)

    lock = threading.Lock()
    inflight = [0]

    @app.middleware("http")
    async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_body_bytes):
            response: Response = _error(
                413, f"request body over {max_body_bytes} bytes; send smaller batches"
            )
        else:
            with lock:
                busy = inflight[0] >= max_inflight
                if not busy:
                    inflight[0] += 1
            if busy:
                response = _error(429, "too many requests in flight; retry shortly")
                response.headers["Retry-After"] = "1"
            else:
                try:
                    response = await call_next(request)
                finally:
                    with lock:
                        inflight[0] -= 1
        route = request.scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        metrics: Metrics = request.app.state.metrics
        metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)
        return response
