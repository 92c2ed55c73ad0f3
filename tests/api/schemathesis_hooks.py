"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.api.schemathesis_hooks``) for the two input
rules a JSON Schema cannot state, so that every schema-valid case is one the service must accept:

* an event's ``timestamp`` lies between 2000-01-01 and a few minutes past the service's clock,
  a window that moves: generated timestamps of a valid type are replaced by the current time
  (as epoch milliseconds, epoch seconds or ISO 8601), wrong types are left as generated;
* the products of one ``POST /v1/products`` batch have distinct ids: a repeated id gets a suffix;
* a search's ``price_min`` is at most its ``price_max``: a reversed pair is swapped.

The hook runs on every case just before it is sent (all phases), and schemathesis re-checks the
case against the schema afterwards, so positive and negative cases stay what they are. How the
service refuses what these hooks steer away from is tested in tests/unit (test_event_safety.py,
test_product_writes.py, test_openapi.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import schemathesis


def _now_as(original: Any) -> Any:
    now = time.time()
    kind = len(repr(original)) % 3
    if kind == 0:
        return int(now * 1000)
    if kind == 1:
        return round(now, 3)
    return datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")


def _fresh_timestamps(body: Any) -> Any:
    events = body.get("events") if isinstance(body, dict) else None
    if isinstance(events, list):
        for e in events:
            ts = e.get("timestamp") if isinstance(e, dict) else None
            if isinstance(ts, str | int | float) and not isinstance(ts, bool):
                e["timestamp"] = _now_as(ts)
    return body


def _distinct_ids(body: Any) -> Any:
    products = body.get("products") if isinstance(body, dict) else None
    if isinstance(products, list):
        seen: set[str] = set()
        for n, p in enumerate(products):
            pid = p.get("id") if isinstance(p, dict) else None
            if isinstance(pid, float) and pid.is_integer():
                pid = int(pid)  # the service reads 5.0 as 5
            if not isinstance(pid, str | int) or isinstance(pid, bool):
                continue
            key = str(pid)
            if key in seen:
                key = f"{key[:100]}~{n}"
                p["id"] = key
            seen.add(key)
    return body


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _ordered_prices(params: Any) -> None:
    if not isinstance(params, dict):
        return
    lo, hi = _number(params.get("price_min")), _number(params.get("price_max"))
    if lo is not None and hi is not None and lo > hi:
        params["price_min"], params["price_max"] = params["price_max"], params["price_min"]


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    method, path = case.operation.method.upper(), case.operation.path
    if (method, path) == ("POST", "/v1/events"):
        _fresh_timestamps(case.body)
    elif (method, path) == ("POST", "/v1/products"):
        _distinct_ids(case.body)
    elif path == "/v1/search":
        _ordered_prices(case.query if method == "GET" else case.body)
