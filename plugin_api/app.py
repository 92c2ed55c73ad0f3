"""The FastAPI service: ``create_app(settings)``; models and clients live on ``app.state``.

The lifespan builds the services (backend, models, event model). When the backend is down at
start or later, requests get 503 with the reason, the process stays up, and the next request
after a short back-off tries again, so the service recovers by itself when the backend returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from indexer.errors import BackendUnavailableError, IndexMismatchError, ShoprankError
from plugin_api.http import Metrics, install
from plugin_api.services import Services, build_services
from plugin_api.settings import Settings

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2.0


class ServiceHolder:
    """Builds the services on first need; after a failure, retries at most every few seconds."""

    def __init__(self, settings: Settings, build: Callable[[Settings], Services]):
        self.settings = settings
        self._build = build
        self._lock = threading.Lock()
        self._services: Services | None = None
        self._failed_at = 0.0
        self._error: ShoprankError | None = None

    def try_start(self) -> None:
        try:
            self.get()
        except ShoprankError as e:
            log.warning("service not ready yet: %s", e)

    def get(self) -> Services:
        if self._services is not None:
            return self._services
        with self._lock:
            if self._services is not None:
                return self._services
            if self._error is not None and time.monotonic() - self._failed_at < RETRY_AFTER_S:
                raise self._error
            try:
                self._services = self._build(self.settings)
                self._error = None
            except (BackendUnavailableError, IndexMismatchError) as e:
                self._error, self._failed_at = e, time.monotonic()
                raise
            return self._services

    @property
    def services(self) -> Services | None:
        return self._services


def create_app(settings: Settings, *, build: Callable[[Settings], Services] = build_services) -> FastAPI:
    holder = ServiceHolder(settings, build)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder.try_start()
        yield

    app = FastAPI(
        title="shoprank",
        version="1",
        description="Neural search and recommendations for an online store.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = Metrics()
    install(app, max_inflight=settings.max_inflight, max_body_bytes=settings.max_body_bytes)
    from plugin_api.routes import router
    from plugin_api.storefront import router as storefront

    app.include_router(router)
    app.include_router(storefront)
    return app


def app_from_env() -> FastAPI:
    """The app with settings from ``SHOPRANK_*`` (uvicorn's factory for several workers)."""
    return create_app(Settings(**{}))  # reads SHOPRANK_* from the environment
