"""Who may write: admin API keys (the shop's backend) and public keys (its storefront's browsers),
compared in constant time; the keys themselves are never logged."""

from __future__ import annotations

import hmac
from typing import Any

from indexer.errors import ShoprankError


class Unauthorized(ShoprankError):
    """A write without a valid API key (HTTP 401)."""


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


def event_trust(presented: str | None, settings: Any) -> bool:
    """Whether events sent with this key are the shop's own (True: an admin key) or a browser's
    (False: a public key, or no key while the service has no public keys); 401 otherwise."""
    admin: tuple[str, ...] = settings.api_keys
    public: tuple[str, ...] = settings.public_keys
    if presented and admin and _matches(presented, admin):
        return True
    if not public:
        if presented:
            raise Unauthorized("the X-API-Key header does not hold a valid key; send events without one")
        return False
    if not presented:
        raise Unauthorized("events need the storefront's public key in the X-API-Key header")
    if not _matches(presented, public):
        raise Unauthorized("the X-API-Key header does not hold a valid public or admin key")
    return False


def _matches(presented: str, keys: tuple[str, ...]) -> bool:
    given = presented.encode()
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(given, k.encode())
    return ok
