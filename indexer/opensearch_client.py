"""Making an OpenSearch client, and turning transport failures into shoprank's domain errors.

Nothing here imports ``opensearchpy`` or connects at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from indexer.errors import BackendUnavailableError, BadInputError, NotFoundError

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

log = logging.getLogger(__name__)

START_HINT = "start one with `scripts/opensearch start`"


def make_client(url: str, timeout: float = 10.0) -> OpenSearch:
    """An :class:`opensearchpy.OpenSearch` client for one node URL (nothing is sent yet)."""
    from opensearchpy import OpenSearch

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInputError(f"OpenSearch URL must look like http://host:9200, got {redact(url)!r}")
    if timeout <= 0:
        raise BadInputError(f"OpenSearch timeout must be > 0 seconds, got {timeout!r}")
    return OpenSearch(
        hosts=[url.strip()],
        timeout=timeout,
        max_retries=2,
        retry_on_timeout=False,
        pool_maxsize=16,
    )


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
    """Best-effort URL of the (first) node a client talks to, without credentials."""
    try:
        conn = client.transport.connection_pool.connections[0]
        return redact(f"{conn.host}{getattr(conn, 'url_prefix', '') or ''}")
    except (AttributeError, IndexError, TypeError):
        return "<unknown OpenSearch URL>"


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
    return str(exc)


def translate(exc: BaseException, url: str, action: str = "request") -> BaseException:
    """The domain error for an opensearchpy exception, or ``exc`` itself when it has none.

    * no connection, a timeout, or a 5xx/429 answer → :class:`BackendUnavailableError` (with how
      to start a node);
    * 404 on a missing index or alias → :class:`NotFoundError` (with how to build one);
    * anything else (a 4xx from a request we got wrong) is returned unchanged: that is a bug.
    """
    from opensearchpy.exceptions import ConnectionError as OSConnectionError
    from opensearchpy.exceptions import TransportError

    if isinstance(exc, OSConnectionError):  # includes ConnectionTimeout and SSLError
        what = "timed out" if "Timeout" in type(exc).__name__ else "is not reachable"
        return BackendUnavailableError(
            f"OpenSearch at {url} {what} during {action} ({type(exc).__name__}); "
            f"is a node running? {START_HINT}, or set the OpenSearch URL to a running node"
        )
    if isinstance(exc, TransportError):
        status = _status(exc)
        if status is not None and (status >= 500 or status == 429):
            return BackendUnavailableError(
                f"OpenSearch at {url} failed during {action} (HTTP {status}: {_reason(exc)}); "
                f"check the node (`scripts/opensearch status`), or {START_HINT}"
            )
        if status == 404:
            return NotFoundError(
                f"OpenSearch at {url}: {_reason(exc)} during {action}; build the index with `shoprank index`"
            )
    return exc


@contextmanager
def os_errors(url: str, action: str = "request") -> Iterator[None]:
    """Run a block of client calls, raising domain errors for transport failures."""
    from opensearchpy.exceptions import TransportError

    try:
        yield
    except TransportError as exc:
        mapped = translate(exc, url, action)
        if mapped is exc:
            raise
        log.debug("OpenSearch %s failed at %s: %r", action, url, exc)
        raise mapped from exc


def raise_response_error(item: Mapping[str, Any], url: str, action: str) -> NoReturn:
    """Raise the domain error for one failed ``_msearch`` response item."""
    from opensearchpy.exceptions import HTTP_EXCEPTIONS, TransportError

    status = int(item.get("status") or 500)
    err = item.get("error")
    error_type = err.get("type", "error") if isinstance(err, Mapping) else str(err)
    exc = HTTP_EXCEPTIONS.get(status, TransportError)(status, error_type, dict(item))
    raise translate(exc, url, action) from None
