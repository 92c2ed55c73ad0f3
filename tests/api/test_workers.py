"""``shoprank serve --workers 2`` on the embedded backend: what one worker stores, every worker serves.

The two processes share the index folder: product writes reach the other worker through the
index's update log, events, queries and erasures through the shared event logs, reviews through
the review log. Each fresh connection reaches one of the workers (the kernel hands it to the first
that accepts), and ``/metrics`` names the worker a connection reached (``shoprank_worker{pid}``),
so a read on the same connection is known to come from that worker. Every check below must hold
on both workers, within the follow delay the service states (1 s, polled here up to 30 s).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_schemathesis import _free_port, _wait_ready
from tests.conftest import ROOT, build_fixture_index

KEY = "workers-admin-key"
ADMIN = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    root = build_fixture_index(tmp_path_factory.mktemp("workers"))
    env = {
        **os.environ,
        "SHOPRANK_EMBEDDER": "hashing",
        "SHOPRANK_DEVICE": "cpu",
        "SHOPRANK_DATA_DIR": str(root / "data"),
        "SHOPRANK_CACHE_DIR": str(root / "cache"),
        "SHOPRANK_API_KEYS": json.dumps([KEY]),
        "SHOPRANK_RESULT_CACHE_REFRESH_S": "0",
    }
    port, log = _free_port(), root / "serve.log"
    cmd = [sys.executable, "-m", "plugin_api.cli", "serve", "--workers", "2", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, log, timeout_s=180)
        yield base, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _worker(client: httpx.Client) -> str:
    text = client.get("/metrics").text
    found = re.search(r'shoprank_worker\{pid="(\d+)"\}', text)
    assert found, text[:500]
    return found.group(1)


def on_every_worker(base: str, check: Callable[[httpx.Client], bool], *, timeout_s: float = 30.0) -> None:
    """Until ``check`` held on a connection to each of the two workers (fresh connections)."""
    passed: set[str] = set()
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with httpx.Client(base_url=base, timeout=60.0) as client:  # one connection, one worker
            pid = _worker(client)
            seen.add(pid)
            if check(client):
                passed.add(pid)
        if len(passed) == 2:
            return
        time.sleep(0.05)
    pytest.fail(f"held on workers {sorted(passed)} of {sorted(seen)} within {timeout_s:.0f} s")


def test_two_workers_answer(service):
    base, log = service
    on_every_worker(base, lambda c: c.get("/readyz").status_code == 200)


def test_a_product_written_to_one_worker_is_found_on_both(service):
    base, _ = service
    with httpx.Client(base_url=base, timeout=60.0) as client:
        r = client.put("/v1/products/w1", json={"title": "Zyxqua rocket skates", "price": 99}, headers=ADMIN)
        assert r.status_code == 200, r.text

    def found(c: httpx.Client) -> bool:
        hits = c.get("/v1/search", params={"q": "zyxqua skates", "k": 3}).json()["results"]
        return bool(hits) and hits[0]["id"] == "w1"

    on_every_worker(base, found)
    with httpx.Client(base_url=base, timeout=60.0) as client:
        assert client.delete("/v1/products/w1", headers=ADMIN).json()["deleted"] == 1

    def gone(c: httpx.Client) -> bool:
        hits = c.get("/v1/search", params={"q": "zyxqua skates", "k": 3}).json()["results"]
        return all(h["id"] != "w1" for h in hits)

    on_every_worker(base, gone)


def _event(action: str, client_id: str, pid: str, query_id: str = "q-w") -> dict:
    return {
        "action_name": action,
        "client_id": client_id,
        "query_id": query_id,
        "timestamp": int(time.time() * 1000),
        "event_attributes": {"object": {"object_id": pid, "object_id_field": "id"}},
    }


def test_events_and_an_erasure_on_one_worker_reach_both(service):
    base, _ = service
    with httpx.Client(base_url=base, timeout=60.0) as client:
        r = client.post(
            "/v1/events", json={"events": [_event("purchase", "w-shopper", "p03")]}, headers=ADMIN
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text

    def profiled(c: httpx.Client) -> bool:
        recs = c.get("/v1/recommend/user/w-shopper").json()
        return recs["strategy"] == "profile" and "p03" not in {x["id"] for x in recs["results"]}

    on_every_worker(base, profiled)
    with httpx.Client(base_url=base, timeout=60.0) as client:
        assert client.delete("/v1/users/w-shopper", headers=ADMIN).status_code == 200
    on_every_worker(base, lambda c: c.get("/v1/recommend/user/w-shopper").json()["strategy"] == "trending")


def test_a_click_on_a_search_another_worker_served_is_verified(service):
    """A browser's click counts for shared signals only when its query_id's search showed that
    shopper the product; the search and the click may reach different workers."""
    base, log = service
    searched: dict[str, tuple[str, str]] = {}  # worker → (query id, the product it showed first)
    deadline = time.monotonic() + 30
    while len(searched) < 2 and time.monotonic() < deadline:
        with httpx.Client(base_url=base, timeout=60.0) as client:
            pid = _worker(client)
            body = client.get("/v1/search", params={"q": "notebook", "k": 3, "user_id": "w-clicker"}).json()
            searched.setdefault(pid, (body["query_id"], body["results"][0]["id"]))
    assert len(searched) == 2, searched
    clicked: set[str] = set()
    while clicked != set(searched) and time.monotonic() < deadline + 30:
        with httpx.Client(base_url=base, timeout=60.0) as client:  # a browser: no key
            pid = _worker(client)
            other = next(w for w in searched if w != pid)
            if other in clicked:
                continue
            query_id, shown = searched[other]
            r = client.post("/v1/events", json={"events": [_event("click", "w-clicker", shown, query_id)]})
            assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
            clicked.add(other)
    assert clicked == set(searched)
    events = log.parent / "data" / "index" / "ubi_events.jsonl"
    stored = [json.loads(line) for line in events.read_text().splitlines()]
    clicks = {d["query_id"]: d for d in stored if d["client_id"] == "w-clicker"}
    assert {q for q, _ in searched.values()} == set(clicks)
    assert all(d["verified"] and not d["trusted"] for d in clicks.values()), clicks


def test_a_worker_that_dies_is_replaced(service):
    base, _ = service
    with httpx.Client(base_url=base, timeout=60.0) as client:
        victim = _worker(client)
    os.kill(int(victim), signal.SIGKILL)
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    while len(seen - {victim}) < 2 and time.monotonic() < deadline:
        try:
            with httpx.Client(base_url=base, timeout=60.0) as client:
                seen.add(_worker(client))
        except httpx.TransportError:  # a connection the dead worker's socket had queued
            pass
        time.sleep(0.1)
    assert len(seen - {victim}) == 2, f"workers seen after {victim} died: {sorted(seen)}"
