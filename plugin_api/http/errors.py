"""The one place domain errors become HTTP statuses and error bodies, and the app's middleware
(transport limits, metrics per endpoint) is installed."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer.errors import (
    BackendUnavailableError,
    BadInputError,
    FeatureUnavailableError,
    IndexMismatchError,
    NotFoundError,
    OverloadedError,
    ShoprankError,
)
from plugin_api.http.auth import Unauthorized
from plugin_api.http.limits import Guard, Limits
from plugin_api.http.metrics import Metrics

log = logging.getLogger(__name__)

# The one place domain errors become HTTP statuses (most specific class first).
STATUS: tuple[tuple[type[ShoprankError], int], ...] = (
    (BadInputError, 422),
    (NotFoundError, 404),
    (OverloadedError, 429),
    (BackendUnavailableError, 503),
    (IndexMismatchError, 503),
    (FeatureUnavailableError, 503),
)


def status_of(exc: ShoprankError) -> int:
    if isinstance(exc, Unauthorized):
        return 401
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def _error(status: int, message: str, detail: list[dict[str, str]] | None = None) -> JSONResponse:
    """The one error body (``plugin_api.http.schemas.ErrorOut``): what went wrong, field by field."""
    return JSONResponse({"error": message, "detail": detail}, status_code=status)


JSON_HINT = "send a JSON object with Content-Type: application/json"


def validation_problems(errors: Sequence[Any]) -> list[dict[str, str]]:
    """FastAPI's validation errors as ``{field, message}``: ``field`` is the query parameter, the
    dotted body path (``events.3.timestamp``) or ``body`` for the body as a whole."""
    out = []
    for e in errors:
        loc = tuple(e.get("loc", ()))
        kind = e.get("type", "")
        if kind == "json_invalid":
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            reason = (e.get("ctx") or {}).get("error", "JSON decode error")
            message = f"the body is not valid JSON ({reason}{where}); {JSON_HINT}"
            out.append({"field": "body", "message": message})
            continue
        path = ".".join(str(p) for p in (loc[1:] if loc[:1] == ("body",) else loc))
        message = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
        if loc == ("body",):
            if kind == "missing":
                message = f"the request body is missing; {JSON_HINT}"
            elif isinstance(e.get("input"), bytes | str):
                message = f"the body is not JSON; {JSON_HINT}"
        out.append({"field": path or "body", "message": message})
    return out or [{"field": "body", "message": "invalid request"}]


def _allowed_methods(request: Request, fallback: str) -> list[str]:
    """Every method the OpenAPI document names for this path (Starlette's ``Allow`` names only
    the first route's); ``fallback`` (Starlette's) for paths the document leaves out."""
    methods: set[str] = set()
    for template, ops in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {m.upper() for m in ops}
    return sorted(methods) or [m.strip() for m in fallback.split(",") if m.strip()]


def install(app: FastAPI, *, max_inflight: int, max_body_bytes: int) -> None:
    """Error handlers, the transport limits (:mod:`plugin_api.http.limits`) and request metrics; the
    other limits come from ``app.state.settings``."""

    @app.exception_handler(ShoprankError)
    async def _domain(request: Request, exc: ShoprankError) -> JSONResponse:
        code = status_of(exc)
        # Backend outages are logged once per state change where they are detected (the
        # OpenSearch client, the service holder), not once per request here.
        if code >= 500 and not isinstance(exc, BackendUnavailableError | IndexMismatchError):
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        response = _error(code, str(exc), getattr(exc, "problems", None))
        if code == 429:
            response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = validation_problems(exc.errors())
        first = fields[0]
        more = f" (and {len(fields) - 1} more problem(s))" if len(fields) > 1 else ""
        return _error(422, f"{first['field']}: {first['message']}{more}", fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own answers (no such path, a method the path does not take, a body it
        could not read) in the one error shape."""
        code, headers = exc.status_code, dict(exc.headers or {})
        if code == 400 and "parsing the body" in str(exc.detail):
            # FastAPI could not read the body (not UTF-8, nested too deep): invalid JSON, so 422
            message = f"the body could not be read as JSON; {JSON_HINT}"
            return _error(422, f"body: {message}", [{"field": "body", "message": message}])
        if code == 404:
            message = f"no such path {request.url.path!r}; the API is described at /openapi.json"
        elif code == 405:
            allowed = _allowed_methods(request, headers.get("Allow", ""))
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        else:
            message = str(exc.detail)
        response = _error(code, message)
        response.headers.update(headers)
        return response

    # The transport limits (body bytes read, read deadlines, admission) and request metrics.
    limits = replace(
        Limits.from_settings(app.state.settings), max_inflight=max_inflight, max_body_bytes=max_body_bytes
    )

    def observe(endpoint: str, method: str, status: int, seconds: float, admitted: bool) -> None:
        metrics: Metrics = app.state.metrics
        metrics.requests.labels(endpoint, method, str(status)).inc()
        if admitted:  # latency of requests the service took on; refusals are counted above
            metrics.latency.labels(endpoint).observe(seconds)

    app.add_middleware(Guard, limits=limits, error=_error, observe=observe)
