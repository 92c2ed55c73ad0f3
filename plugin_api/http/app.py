"""The FastAPI service: ``create_app(settings)``; models and clients live on ``app.state``.

The lifespan builds the services (backend, models, event model). When the backend is down at
start or later, requests get 503 with the reason, the process stays up, and the next request
after a short back-off tries again, so the service recovers by itself when the backend returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from indexer.errors import BackendUnavailableError, IndexMismatchError, ShoprankError
from plugin_api.http.errors import install
from plugin_api.http.metrics import Metrics
from plugin_api.http.services import Services, build_services
from plugin_api.settings import Settings

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2.0


class ServiceHolder:
    """Builds the services on first need; after a failure, retries at most every few seconds.

    Logs one line when the services cannot be built (with the reason) and one when they are built
    after all, never one per request that got 503 meanwhile (those the HTTP layer answers quietly).
    """

    def __init__(self, settings: Settings, build: Callable[[Settings], Services]):
        self.settings = settings
        self._build = build
        self._lock = threading.Lock()
        self._services: Services | None = None
        self._failed_at = 0.0
        self._down_since: float | None = None
        self._failures = 0
        self._error: ShoprankError | None = None

    def try_start(self) -> None:
        with contextlib.suppress(ShoprankError):  # logged once by _get()
            self._get(request=False)

    def get(self) -> Services:
        return self._services if self._services is not None else self._get(request=True)

    def _get(self, *, request: bool) -> Services:
        with self._lock:
            if self._services is not None:
                return self._services
            if self._error is not None and time.monotonic() - self._failed_at < RETRY_AFTER_S:
                self._failures += request
                raise self._error
            try:
                self._services = self._build(self.settings)
            except (BackendUnavailableError, IndexMismatchError) as e:
                now = time.monotonic()
                if self._down_since is None:
                    self._down_since = now
                    log.warning(
                        "service not ready (%s); answering 503 and retrying every %.0f s", e, RETRY_AFTER_S
                    )
                self._error, self._failed_at = e, now
                self._failures += request
                raise
            if self._down_since is not None:
                log.warning(
                    "service ready after %.1f s (%d requests answered 503 meanwhile)",
                    time.monotonic() - self._down_since,
                    self._failures,
                )
            self._error, self._down_since, self._failures = None, None, 0
            settle_heap()
            return self._services

    @property
    def services(self) -> Services | None:
        return self._services


def settle_heap() -> None:
    """Move what start-up built (a million objects: products, indexes, vocabulary, models) out of
    the garbage collector's reach: a full collection over it held every request for ~0.6 s on the
    2-core CPU, which was the p99 of `bench.serve_load`. Later objects are collected as usual."""
    gc.collect()
    gc.freeze()
    log.info("start-up heap frozen: %d objects outside the collector", gc.get_freeze_count())


# The service's scheduled jobs: (what, the Services method, the settings field with its period).
# Each method keeps to its own period itself; the loop only wakes it, off the event loop.
SCHEDULED = (
    ("event expiry", "expire_events", "event_expiry_every_s"),  # deletes old events without new ones
    ("vocabulary refresh", "refresh_vocabulary", "vocabulary_refresh_s"),  # new products' words
    ("event sync", "sync_events", "event_follow_s"),  # other workers' events (embedded; OpenSearch
    # keeps to event_sync_s itself)
)


async def _periodically(holder: ServiceHolder, what: str, method: str, every_s: float) -> None:
    """Run ``Services.<method>`` every ``every_s`` (at most a minute apart) while the app lives."""
    while True:
        await asyncio.sleep(min(every_s, 60.0))
        services = holder.services
        if services is None:
            continue
        try:
            await asyncio.to_thread(getattr(services, method))
        except ShoprankError as e:  # the backend is down: the next round tries again
            log.warning("scheduled %s failed: %s", what, e)


def create_app(settings: Settings, *, build: Callable[[Settings], Services] = build_services) -> FastAPI:
    holder = ServiceHolder(settings, build)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder.try_start()
        tasks = [
            asyncio.create_task(_periodically(holder, what, method, getattr(settings, period)))
            for what, method, period in SCHEDULED
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

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
    from plugin_api.http.routes import router
    from plugin_api.http.storefront import router as storefront

    app.include_router(router)
    app.include_router(storefront)
    return app


def app_from_env() -> FastAPI:
    """The app with settings from ``SHOPRANK_*`` (uvicorn's factory for several workers)."""
    return create_app(Settings(**{}))  # reads SHOPRANK_* from the environment
