"""Transport limits that hold against slow or lying clients, and admission control under overload.

:class:`Guard` is a pure ASGI middleware. For every HTTP request it

1. refuses a body over ``max_body_bytes`` with 413, counting the bytes actually read (chunked
   bodies and a ``Content-Length`` that lies included) and closes the connection;
2. reads the whole body within ``read_timeout_s`` or answers 408 and closes the connection;
3. only then asks :class:`Admission` for one of ``max_inflight`` slots (a short FIFO queue of
   ``max_queued`` requests waits up to ``queue_wait_s``; the rest get 429 with Retry-After after
   a short hold), so a stalled upload never holds a slot and admitted requests stay fast. Reads
   (GET, HEAD, a POST search) and writes (product, event, review and erasure requests) have
   pools of their own: a busy storefront never locks out the shop's price updates, and writes
   waiting on the disk's fsync hold no search's slot;
4. replays the buffered body to the app and records the request in the metrics.

:class:`DeadlineH11Protocol` is uvicorn's h11 protocol with one more rule: a connection must send
a complete request head within ``timeout_keep_alive`` seconds of opening or of its previous
response, or it is closed (uvicorn alone waits forever for headers that never end).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import h11
from starlette.routing import Match
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from plugin_api.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# (status, message) -> an ASGI response in the service's error shape
ErrorResponse = Callable[[int, str], Any]
# (endpoint, method, status, seconds, admitted): admitted is False for the guard's own refusals
Observe = Callable[[str, str, int, float, bool], None]
Outcome = Literal["admitted", "full", "late"]

RETRY_AFTER_S = 1
# A request refused because the wait queue is full is answered this long after it came (at most
# queue_wait_s). It costs nothing to hold, and caps the 429s a client retrying at once can draw.
REFUSAL_HOLD_S = 0.25
# Probes and scrapes stay answerable under overload (they are cheap and carry no body).
UNMETERED_PATHS = frozenset({"/healthz", "/metrics"})
# requests that change nothing although their method could (admitted with the reads)
READ_POSTS = frozenset({"/v1/search"})
# Request heads (request line + headers) over this many bytes get 400 from h11.
MAX_HEAD_BYTES = 16 * 1024
# The status the metrics record for a client that left while sending its body (nginx's 499).
CLIENT_GONE = 499


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    read_timeout_s: float
    max_inflight: int
    max_queued: int
    queue_wait_s: float

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(
            max_body_bytes=s.max_body_bytes,
            read_timeout_s=s.read_timeout_s,
            max_inflight=s.max_inflight,
            max_queued=s.max_queued,
            queue_wait_s=s.queue_wait_s,
        )


class _Waiter:
    __slots__ = ("future", "granted")

    def __init__(self, future: asyncio.Future[None]):
        self.future = future
        self.granted = False


class Admission:
    """At most ``slots`` holders at once; up to ``queued`` more wait (FIFO) at most ``wait_s``.

    A freed slot is handed straight to the oldest waiter (under the lock), so a newcomer never
    overtakes the queue and a waiter that times out at the same moment cannot lose it.
    Thread-safe: a TestClient without a context may run requests on several event loops.
    """

    def __init__(self, slots: int, queued: int, wait_s: float):
        self._free = slots
        self._queued = queued
        self._wait_s = wait_s
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> Outcome:
        """``admitted`` (call :meth:`release` after), ``full`` (no slot and no room to wait) or
        ``late`` (no slot within ``wait_s``)."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return "admitted"
            if len(self._waiters) >= self._queued or self._wait_s <= 0:
                return "full"
            waiter = _Waiter(asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
        try:
            await asyncio.wait({waiter.future}, timeout=self._wait_s)
        finally:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted and (task := asyncio.current_task()) is not None and task.cancelling():
                self.release()  # cancelled while the slot was being handed over: pass it on
        return "admitted" if granted else "late"

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                try:
                    waiter.future.get_loop().call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:  # its event loop is closed: nobody is waiting there
                    continue
                waiter.granted = True
                return
            self._free += 1


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _BodyTooLarge(Exception):
    pass


class _Refusal(Exception):
    """Answered by :class:`Guard` in the service's error shape, before the app runs."""

    def __init__(self, status: int, message: str, *, close: bool = False):
        super().__init__(message)
        self.status = status
        self.close = close


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, limit: int, deadline: float) -> bytes:
    """The whole request body, at most ``limit`` bytes, by ``deadline`` (loop time)."""
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout_at(deadline):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _endpoint(scope: Scope) -> str:
    """The route template a request was for — also when the guard refused it before routing, so
    refusals count under their endpoint; ``unmatched`` for unknown paths (bounded label values)."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", "unmatched"))
    probe = {k: scope[k] for k in ("type", "path", "method", "root_path", "headers") if k in scope}
    return _template(getattr(scope.get("app"), "routes", ()), probe) or "unmatched"


def _template(routes: Any, scope: Scope, depth: int = 0) -> str | None:
    """The path of the route that fully matches ``scope``, looking into included routers."""
    for r in routes:
        if r.matches(scope)[0] != Match.FULL:
            continue
        path = getattr(r, "path", None)
        if path:
            return str(path)
        inner = getattr(r, "routes", None) or getattr(getattr(r, "original_router", None), "routes", None)
        if inner and depth < 4:
            found = _template(inner, dict(scope), depth + 1)
            if found:
                return found
    return None


class Guard:
    """The middleware (see the module docstring); ``error`` builds the 4xx responses."""

    def __init__(self, app: ASGIApp, *, limits: Limits, error: ErrorResponse, observe: Observe):
        self.app = app
        self.limits = limits
        self.error = error
        self.observe = observe
        self.admission = Admission(limits.max_inflight, limits.max_queued, limits.queue_wait_s)  # reads
        self.write_admission = Admission(limits.max_inflight, limits.max_queued, limits.queue_wait_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        admitted = True
        try:
            await self._handle(scope, receive, send_recording)
        except _Refusal as r:
            admitted = False
            if r.status == CLIENT_GONE:
                status[0] = CLIENT_GONE
                return
            response = self.error(r.status, str(r))
            if r.close:  # the rest of this body is never read: the connection cannot be reused
                response.headers["Connection"] = "close"
            if r.status == 429:
                response.headers["Retry-After"] = str(RETRY_AFTER_S)
            await response(scope, receive, send_recording)
        finally:
            self.observe(_endpoint(scope), scope["method"], status[0], time.perf_counter() - t0, admitted)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        lim = self.limits
        too_large = f"request body over {lim.max_body_bytes} bytes; send smaller batches"
        headers = dict(scope["headers"])
        length, chunked = headers.get(b"content-length"), headers.get(b"transfer-encoding")
        if length is not None and chunked is not None:
            raise _Refusal(400, "send either Content-Length or Transfer-Encoding, not both", close=True)
        if length is not None and (not length.isdigit() or int(length) > lim.max_body_bytes):
            raise _Refusal(413, too_large, close=True)
        if length is not None or chunked is not None:
            deadline = asyncio.get_running_loop().time() + lim.read_timeout_s
            try:
                body = await _read_body(receive, lim.max_body_bytes, deadline)
            except _BodyTooLarge:
                raise _Refusal(413, too_large, close=True) from None
            except TimeoutError:
                raise _Refusal(
                    408,
                    f"the request body did not arrive within {lim.read_timeout_s:g} s; "
                    "send the whole body at once",
                    close=True,
                ) from None
            except _Disconnected:
                raise _Refusal(CLIENT_GONE, "the client closed the connection") from None
            receive = _replay(body, receive)
        if scope["path"] in UNMETERED_PATHS:
            await self.app(scope, receive, send)
            return
        admission = self.admission if _reads(scope) else self.write_admission
        outcome = await admission.acquire()
        if outcome == "full":
            # Clients that retry at once (no back-off) would otherwise turn refusals into a CPU
            # storm that starves the admitted requests: each waits a moment for its 429.
            await asyncio.sleep(min(REFUSAL_HOLD_S, lim.queue_wait_s))
        if outcome != "admitted":
            raise _Refusal(429, f"too many requests in flight; retry in {RETRY_AFTER_S} s")
        try:
            await self.app(scope, receive, send)
        finally:
            admission.release()


def _reads(scope: Scope) -> bool:
    """Whether a request only reads (its admission pool)."""
    return scope["method"] in ("GET", "HEAD") or scope["path"] in READ_POSTS


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that closes a connection whose request head is not complete within
    ``timeout_keep_alive`` seconds of the connection opening or of the previous response."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            self._stop_head_timer()  # closing, or the head arrived: the app's deadlines take over
        elif self._head_timer is None:
            self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_late)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()


def uvicorn_options(s: Settings) -> dict[str, Any]:
    """The transport options ``shoprank serve`` gives uvicorn (also used by the tests)."""
    return {
        "http": f"{DeadlineH11Protocol.__module__}:{DeadlineH11Protocol.__qualname__}",
        # idle keep-alive connections and unfinished request heads are closed after this long
        "timeout_keep_alive": max(1, math.ceil(s.read_timeout_s)),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }
