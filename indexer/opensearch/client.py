"""Making an OpenSearch client, turning transport failures into shoprank's domain errors, and
logging an outage once per state change.

Every failure of the backend becomes a :class:`BackendUnavailableError` (HTTP 503) that says
why, except a missing index (:class:`NotFoundError`). A process logs one line when a node
stops answering and one when it answers again (:class:`Availability`), never a line or a
traceback per request: the client's own connection classes log failed attempts at DEBUG only.

Nothing here imports ``opensearchpy`` or connects at import time.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from indexer.errors import BackendUnavailableError, BadInputError, NotFoundError

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

log = logging.getLogger(__name__)

START_HINT = "start one with `scripts/opensearch start`"
# A node that answers HTTP before its plugins and cluster state are ready (during a restart) refuses
# valid k-NN requests with a 400: "[knn] unknown method parameter found [ef_search]", "no [query]
# registered for [knn]". Those mean "not ready yet", not "bad request".
NOT_READY = re.compile(
    r"unknown method parameter|method parameter.*not (?:valid|supported)|"
    r"no \[query\] registered for \[knn\]|unknown query \[knn\]|knn.*(?:not|isn't) (?:enabled|supported)",
    re.IGNORECASE,
)
MAX_REASON = 300


def split_urls(url: str) -> list[str]:
    """One node URL, or several separated by commas (a cluster: the client fails over between them)."""
    urls = [u.strip() for u in str(url).split(",") if u.strip()]
    if not urls:
        raise BadInputError("OpenSearch URL is empty; give one like http://127.0.0.1:9200")
    for u in urls:
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInputError(
                f"OpenSearch URL must look like http://host:9200 (several: comma-separated), got {redact(u)!r}"
            )
    return urls


def make_client(
    url: str, timeout: float = 10.0, *, connection_class: type | None = None, **connection_kwargs: Any
) -> OpenSearch:
    """An :class:`opensearchpy.OpenSearch` client for one node URL or a comma-separated list of
    them (nothing is sent yet). Requests go round-robin; a node that fails is left out for a
    while and the request is retried on the next one. ``connection_class`` is for tests."""
    from opensearchpy import OpenSearch

    hosts = split_urls(url)
    if timeout <= 0:
        raise BadInputError(f"OpenSearch timeout must be > 0 seconds, got {timeout!r}")
    transport_class, connection, pool = _classes()
    client = OpenSearch(
        hosts=hosts,
        timeout=timeout,
        max_retries=max(2, len(hosts)),
        retry_on_timeout=False,
        pool_maxsize=16,
        transport_class=transport_class,
        connection_class=connection_class or connection,
        connection_pool_class=pool,
        **connection_kwargs,
    )
    tracked: Any = client.transport
    tracked.availability = availability(client_url(client))
    return client


def redact(url: str) -> str:
    """The URL without user:password (never put credentials into an error message or a log)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def client_url(client: Any) -> str:
    """Best-effort URL(s) of the nodes a client talks to, comma-separated, without credentials."""
    try:
        pool = client.transport.connection_pool
        conns = list(getattr(pool, "orig_connections", None) or pool.connections)
        return ",".join(redact(f"{c.host}{getattr(c, 'url_prefix', '') or ''}") for c in conns)
    except (AttributeError, IndexError, TypeError):
        return "<unknown OpenSearch URL>"


# -- one log line per state change ------------------------------------------------------------------
class Availability:
    """Whether OpenSearch (one URL or one list of nodes) answered this process's last request.

    ``failed`` on the first failure logs one WARNING with the reason; further failures only count.
    ``answered`` after an outage logs one WARNING saying it is back, how long it was gone and how
    many requests failed meanwhile. ``refused`` logs an ERROR once per distinct reason (a request
    the node rejects is a bug or a version mismatch, not an outage). Thread-safe.
    """

    MAX_REFUSALS = 64

    def __init__(self, where: str, *, clock: Callable[[], float] = time.monotonic):
        self.where = where
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._failures = 0
        self._refusals: set[str] = set()

    @property
    def up(self) -> bool:
        return self._down_since is None

    def failed(self, reason: str) -> None:
        with self._lock:
            if self._down_since is not None:
                self._failures += 1
                return
            self._down_since, self._failures = self._clock(), 1
        log.warning(
            "OpenSearch at %s is unavailable (%s); requests get 503 until it answers again",
            self.where,
            _short(reason),
        )

    def answered(self) -> None:
        if self._down_since is None:  # the common case: no lock
            return
        with self._lock:
            if self._down_since is None:
                return
            down_s, failures = self._clock() - self._down_since, self._failures
            self._down_since, self._failures = None, 0
        log.warning(
            "OpenSearch at %s answers again after %.1f s unavailable (%d failed requests)",
            self.where,
            down_s,
            failures,
        )

    def refused(self, reason: str) -> None:
        key = _short(reason)
        with self._lock:
            if key in self._refusals or len(self._refusals) >= self.MAX_REFUSALS:
                return
            self._refusals.add(key)
        log.error("OpenSearch at %s refused a request shoprank sent (%s); answering 503", self.where, key)


_registry: dict[str, Availability] = {}
_registry_lock = threading.Lock()


def availability(where: str) -> Availability:
    """The process-wide :class:`Availability` of one OpenSearch URL (every client for it shares
    it, so an outage is logged once however many stores and backends talk to the node)."""
    with _registry_lock:
        found = _registry.get(where)
        if found is None:
            found = _registry[where] = Availability(where)
        return found


_dead_nodes: set[str] = set()


def _node_state(node: str, *, dead: bool) -> bool:
    """Record one node as dead or alive in this process; True when that is a change (every
    client's pool reports its own view of the node: the process logs the change once)."""
    with _registry_lock:
        changed = (node in _dead_nodes) != dead
        if dead:
            _dead_nodes.add(node)
        else:
            _dead_nodes.discard(node)
        return changed


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


# -- classifying failures ---------------------------------------------------------------------------
def _status(exc: Any) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _reason(exc: Any) -> str:
    """The server's own explanation (``error.reason``) when there is one, else the exception text."""
    info = getattr(exc, "info", None)
    if isinstance(info, Mapping):
        err = info.get("error")
        if isinstance(err, Mapping):
            root = err.get("root_cause") or []
            if root and isinstance(root[0], Mapping) and root[0].get("reason"):
                return f"{err.get('type', 'error')}: {root[0]['reason']}"
            if err.get("reason"):
                return f"{err.get('type', 'error')}: {err['reason']}"
        elif err:
            return str(err)
    if isinstance(info, BaseException):  # a connection failure: urllib3's error says what happened
        return f"{type(exc).__name__}: {info}"
    return str(exc)


def _not_ready(exc: Any) -> bool:
    return _status(exc) == 400 and bool(NOT_READY.search(f"{_reason(exc)} {getattr(exc, 'info', '')}"))


def outage_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means OpenSearch cannot serve now (no connection, a timeout, a 5xx or 429, a node
    not ready yet, an answer that is not JSON), or None when the node answered normally."""
    from opensearchpy.exceptions import ConnectionError as OSConnectionError
    from opensearchpy.exceptions import SerializationError, TransportError

    if isinstance(exc, OSConnectionError):
        return _reason(exc)
    if isinstance(exc, SerializationError):
        return f"an answer that is not JSON ({exc})"
    if isinstance(exc, TransportError):
        status = _status(exc)
        if status is None or status >= 500 or status == 429:
            return f"HTTP {status or 'N/A'}: {_reason(exc)}"
        if _not_ready(exc):
            return f"not ready: HTTP {status}: {_reason(exc)}"
    return None


def translate(exc: BaseException, url: str, action: str = "request") -> BaseException:
    """The domain error for an opensearchpy exception, or ``exc`` itself when it is not one.

    * 404 on a missing index or alias → :class:`NotFoundError` (with how to build one);
    * anything else OpenSearch does → :class:`BackendUnavailableError` (HTTP 503) with the reason:
      no connection or a timeout (with how to start a node), a 5xx/429, a node still starting
      (its k-NN plugin refuses ``ef_search``), an answer that is not JSON, or a request the node
      refuses (a version mismatch or a bug, logged once per reason).
    """
    from opensearchpy.exceptions import ConnectionError as OSConnectionError
    from opensearchpy.exceptions import OpenSearchException, TransportError

    if isinstance(exc, OSConnectionError):  # includes ConnectionTimeout and SSLError
        what = "timed out" if "Timeout" in type(exc).__name__ else "is not reachable"
        return BackendUnavailableError(
            f"OpenSearch at {url} {what} during {action} ({type(exc).__name__}); "
            f"is a node running? {START_HINT}, or set the OpenSearch URL to a running node"
        )
    if not isinstance(exc, OpenSearchException):
        return exc
    status = _status(exc) if isinstance(exc, TransportError) else None
    if status == 404:
        return NotFoundError(
            f"OpenSearch at {url}: {_reason(exc)} during {action}; build the index with `shoprank index`"
        )
    reason = outage_reason(exc)
    if reason is not None and _not_ready(exc):
        return BackendUnavailableError(
            f"OpenSearch at {url} is not ready for {action} yet (HTTP {status}: {_reason(exc)}); "
            "a node that is starting answers before its k-NN plugin and cluster state are ready: retry shortly"
        )
    if reason is not None:
        return BackendUnavailableError(
            f"OpenSearch at {url} failed during {action} ({reason}); "
            f"check the node (`scripts/opensearch status`), or {START_HINT}"
        )
    refused = f"HTTP {status or 'N/A'}: {_reason(exc)}"
    availability(url).refused(f"{action}: {refused}")
    return BackendUnavailableError(
        f"OpenSearch at {url} refused {action} ({refused}); shoprank needs OpenSearch 2.19 with the "
        "k-NN plugin (`scripts/opensearch status`); if it runs that, this is a bug: please report it"
    )


@contextmanager
def os_errors(url: str, action: str = "request") -> Iterator[None]:
    """Run a block of client calls, raising domain errors for everything OpenSearch does wrong."""
    from opensearchpy.exceptions import OpenSearchException

    try:
        yield
    except OpenSearchException as exc:
        mapped = translate(exc, url, action)
        if mapped is exc:
            raise
        log.debug("OpenSearch %s failed at %s: %r", action, url, exc)
        raise mapped from exc


def ensure_index(client: Any, index: str, body: Mapping[str, Any], url: str) -> bool:
    """Create ``index`` unless it exists; True when this call created it. Two processes may race
    (workers storing their first event at once): the loser's "already exists" is no error."""
    from opensearchpy.exceptions import RequestError

    with os_errors(url, f"creating {index!r}"):
        if client.indices.exists(index=index):
            return False
        try:
            client.indices.create(index=index, body=dict(body))
        except RequestError as exc:
            if "resource_already_exists" not in str(getattr(exc, "error", "")) + _reason(exc):
                raise
            return False
    return True


def raise_response_error(item: Mapping[str, Any], url: str, action: str) -> NoReturn:
    """Raise the domain error for one failed ``_msearch`` response item."""
    from opensearchpy.exceptions import HTTP_EXCEPTIONS, TransportError

    status = int(item.get("status") or 500)
    err = item.get("error")
    error_type = err.get("type", "error") if isinstance(err, Mapping) else str(err)
    exc = HTTP_EXCEPTIONS.get(status, TransportError)(status, error_type, dict(item))
    tracker = _registry.get(url)
    if tracker is not None:  # a 200 _msearch whose item failed: the transport saw a success
        reason = outage_reason(exc)
        if reason is not None:
            tracker.failed(reason)
    raise translate(exc, url, action) from None


# -- the client's classes: quiet connections, a transport that reports to Availability ---------------
@functools.cache
def _classes() -> tuple[type, type, type]:
    """(Transport, Connection, ConnectionPool) subclasses, made on first use (imports opensearchpy)."""
    from opensearchpy import ConnectionPool, Transport, Urllib3HttpConnection

    class QuietConnection(Urllib3HttpConnection):  # type: ignore[misc]
        """Logs a failed attempt at DEBUG (opensearch-py logs each one as a WARNING with a
        traceback, three per request at max_retries=2: 28 MB of log in a minute of outage)."""

        def log_request_fail(
            self,
            method: str,
            full_url: str,
            path: str,
            body: Any,
            duration: float,
            status_code: int | None = None,
            response: str | None = None,
            exception: Exception | None = None,
        ) -> None:
            log.debug(
                "%s %s [status:%s request:%.3fs] %s", method, full_url, status_code, duration, exception or ""
            )

    class QuietPool(ConnectionPool):  # type: ignore[misc]
        """Logs a node's first failure in a row (a state change) as a WARNING, later ones at DEBUG:
        when every node is down, the pool revives one per request and marks it dead again."""

        def mark_dead(self, connection: Any, now: float | None = None) -> None:
            now = now if now else time.time()
            try:
                self.connections.remove(connection)
            except ValueError:  # not alive, or another thread marked it already
                return
            dead_count = self.dead_count.get(connection, 0) + 1
            self.dead_count[connection] = dead_count
            timeout = self.dead_timeout * 2 ** min(dead_count - 1, self.timeout_cutoff)
            self.dead.put((now + timeout, connection))
            node = redact(connection.host)
            (log.warning if _node_state(node, dead=True) else log.debug)(
                "OpenSearch node %s failed; leaving it out for %d s and using the other nodes", node, timeout
            )

        def mark_live(self, connection: Any) -> None:
            was_dead = connection in self.dead_count
            super().mark_live(connection)
            if was_dead:
                node = redact(connection.host)
                if _node_state(node, dead=False):
                    log.warning("OpenSearch node %s answers again", node)

    class TrackedTransport(Transport):  # type: ignore[misc]
        """Tells the client's :class:`Availability` whether each request was answered."""

        availability: Availability | None = None

        def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            from opensearchpy.exceptions import OpenSearchException

            tracker = self.availability
            try:
                result = super().perform_request(method, url, *args, **kwargs)
            except OpenSearchException as exc:
                if tracker is not None:
                    reason = outage_reason(exc)
                    if reason is None:
                        tracker.answered()
                    else:
                        tracker.failed(reason)
                raise
            if tracker is not None:
                tracker.answered()
            return result

    return TrackedTransport, QuietConnection, QuietPool
