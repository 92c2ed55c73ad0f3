"""``bench.hostile_inputs``'s client: the server under test, one row per check, and the error
bodies seen (every one must have the ``{error, detail}`` shape)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from bench.live.server import Server

KEY = "k"
ERROR_KEYS = {"error", "detail"}


class Bench:
    """The server under test, the rows, and every error body seen (for the shape check)."""

    def __init__(self, srv: Server):
        self.srv = srv
        self.rows: list[dict[str, Any]] = []
        self.bad_shapes: list[str] = []
        self.error_answers = 0
        self.known: dict[str, str] = {}  # product id → the title last written for it

    # -- requests -------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        key: bool = False,
        params: dict[str, Any] | None = None,
        timeout: float = 30,
    ) -> tuple[int | str, float, Any]:
        """(status or transport error, ms, parsed JSON or None)."""
        headers = {"X-API-Key": KEY} if key else {}
        if raw is not None:
            headers["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        try:
            r = httpx.request(
                method,
                self.srv.base + path,
                json=body,
                content=raw,
                headers=headers,
                params=params,
                timeout=timeout,
            )
        except httpx.TransportError as e:
            return f"transport error: {type(e).__name__}", (time.perf_counter() - t0) * 1000, None
        ms = (time.perf_counter() - t0) * 1000
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code >= 400:
            self.error_answers += 1
            if not (isinstance(data, dict) and set(data) == ERROR_KEYS):
                self.bad_shapes.append(f"{method} {path} → {r.status_code}: {r.text[:120]}")
        return r.status_code, ms, data

    def row(
        self, case: int, request: str, expected: str, status: Any, ms: float | None, check: str, ok: bool
    ) -> None:
        code = status if isinstance(status, int) else None
        passed = ok and (code is None or code < 500)
        self.rows.append(
            {
                "case": case,
                "request": request,
                "expected": expected,
                "status": status,
                "ms": None if ms is None else round(ms, 1),
                "check": check,
                "pass": passed,
            }
        )

    def expect(self, case: int, request: str, method: str, path: str, want: int, **kw: Any) -> Any:
        """One request whose answer must be ``want`` and leave the events log as it was."""
        before = file_size(self.events_file)
        status, ms, data = self.call(method, path, **kw)
        grew = file_size(self.events_file) - before
        msg = (data or {}).get("error", "") if isinstance(data, dict) else ""
        self.row(
            case,
            request,
            str(want),
            status,
            ms,
            f"events log grew {grew} B" + (f"; “{str(msg)[:90]}”" if msg else ""),
            status == want and grew == 0,
        )
        return data

    @property
    def events_file(self) -> Path:
        return self.srv.sr.data / "index" / "ubi_events.jsonl"

    # -- consistency ----------------------------------------------------------------------------
    def consistency(self, case: int, what: str) -> None:
        """Every hit of a few searches and similar lists carries its own id's record."""
        hits = bad = 0
        statuses: set[Any] = set()
        t0 = time.perf_counter()
        lists: list[Any] = []
        for q in ("notebook", "printer cartridge", "hostile bench", "samsung", "laptop bag"):
            for pipe in ("full", "hybrid"):
                s, _, d = self.call("GET", "/v1/search", params={"q": q, "k": 100, "pipeline": pipe})
                statuses.add(s)
                lists.append(d)
        for pid in ["p01", "p05", "p14", *sorted(i for i in self.known if i.startswith("hi-"))[:3]]:
            s, _, d = self.call("GET", f"/v1/recommend/similar/{pid}", params={"k": 20})
            statuses.add(s)
            lists.append(d)
        for d in lists:
            for h in (d or {}).get("results", []):
                hits += 1
                p = h.get("product") or {}
                if p.get("id") != h["id"] or self.known.get(h["id"]) != p.get("title"):
                    bad += 1
        s, _, ready = self.call("GET", "/readyz")
        count = (ready or {}).get("products")
        self.row(
            case,
            what,
            "200, 0 mismatches",
            "/".join(map(str, sorted(statuses, key=str))),
            (time.perf_counter() - t0) * 1000,
            f"{bad} mismatches in {hits} hits; /readyz products {count} (written {len(self.known)})",
            statuses == {200} and bad == 0 and count == len(self.known),
        )


def file_size(p: Path) -> int:
    return p.stat().st_size if p.exists() else 0


def ubi_event(client: str, pid: str, action: str = "click", ts: Any = None) -> dict[str, Any]:
    return {
        "action_name": action,
        "client_id": client,
        "timestamp": int(time.time() * 1000) if ts is None else ts,
        "event_attributes": {"object": {"object_id": pid, "object_id_field": "id"}},
    }


def raw_event(fragment: str) -> bytes:
    """One event's JSON text with ``fragment`` (raw JSON, e.g. ``"timestamp": NaN``) spliced in."""
    return (
        '{"events": [{"action_name": "click", "client_id": "hi-raw", '
        '"event_attributes": {"object": {"object_id": "p01", "object_id_field": "id"}}, ' + fragment + "}]}"
    ).encode()


def product(pid: str, title: str) -> dict[str, Any]:
    return {"id": pid, "title": title, "brand": "Hostile", "category": "Bench", "price": 9.5}
