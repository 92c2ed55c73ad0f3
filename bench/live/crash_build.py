"""``bench.crash_durability``'s build kills: ``shoprank index`` SIGKILL'ed at three moments while a
server runs; the previous version must stay current and served, and a later build must succeed."""

from __future__ import annotations

import argparse
import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import CHORUS
from bench.live.crash_writes import product
from bench.live.server import FIXTURE, KEY, Server, Shoprank, server_exceptions, sigkill

TRIGGERS = ("1s", "indexing", "writing")
API_ID = "crash-build-api-1"


def _repeated_catalog(path: Path, copies: int) -> Path:
    """The fixture catalog ``copies`` times over (ids suffixed), as a stand-in for Chorus."""
    rows = [json.loads(ln) for ln in FIXTURE.read_text().splitlines() if ln.strip()]
    with open(path, "w") as fh:
        for c in range(copies):
            fh.writelines(json.dumps({**r, "id": f"{r['id']}-{c}", "ean": []}) + "\n" for r in rows)
    return path


def _kill_build(sr: Shoprank, catalog: Path, trigger: str, log: Path, rng: random.Random) -> dict[str, Any]:
    """Start ``shoprank index`` and SIGKILL it at ``trigger`` (one of TRIGGERS)."""
    versions = sr.data / "index" / "versions"
    p = sr.popen(["index", "--catalog", str(catalog), "--quiet"], log)
    t0 = time.monotonic()
    try:
        while p.poll() is None and time.monotonic() - t0 < 300:
            if trigger == "1s" and time.monotonic() - t0 >= 1.0:
                break
            if trigger == "indexing" and "indexing " in log.read_text(errors="replace"):
                time.sleep(0.2)
                break
            if trigger == "writing" and any(v.name.endswith(".tmp") for v in versions.iterdir()):
                time.sleep(rng.uniform(0.0, 0.6))
                break
            time.sleep(0.005)
        finished = p.poll() is not None
        p.send_signal(signal.SIGKILL)
        after = time.monotonic() - t0
        tmp = [v for v in versions.iterdir() if v.name.endswith(".tmp")]
        files = {f.name: f.stat().st_size for t in tmp for f in t.iterdir()}
    finally:
        sigkill(p)
    return {
        "trigger": trigger,
        "killed_after_s": round(after, 2),
        "completed_before_kill": finished,
        "tmp_files_at_kill": files,
    }


def build_kills(args: argparse.Namespace, work: Path, rng: random.Random) -> dict[str, Any]:
    """``args.build_kills`` killed builds of the big catalog, then one left alone."""
    from indexer.embedded.store import EmbeddedStore

    big = args.build_catalog or (
        CHORUS if CHORUS.exists() else _repeated_catalog(work / "repeated.jsonl", 700)
    )
    sr = Shoprank(work, work / "build")
    store = EmbeddedStore(sr.data / "index")
    base = sr.index(args.catalog, work / "build-0.log")["documents"]
    live, fresh = Server(sr, "build-live"), Server(sr, "build-fresh")
    trials: list[dict[str, Any]] = []
    try:
        live.start()
        httpx.post(
            live.base + "/v1/products",
            json={"products": [product(API_ID, rng)]},
            headers={"X-API-Key": KEY},
            timeout=30,
        ).raise_for_status()
        expected = base + 1
        for n in range(args.build_kills):
            t = _build_trial(sr, store, big, n, work, rng, live, fresh, expected)
            expected = t["expected_products"]
            trials.append(t)
        final = _final_build(sr, store, big, work, live, fresh)
    finally:
        live.kill()
        fresh.kill()
    return {
        "server_exceptions": server_exceptions(work, "serve-build-*.log"),
        "catalog": str(args.catalog),
        "catalog_products": base,
        "build_catalog": str(big),
        "trials": trials,
        "final": final,
    }


def _tmp_count(store: Any) -> int:
    return sum(v.name.endswith(".tmp") for v in store.versions_dir.iterdir())


def _build_trial(
    sr: Shoprank,
    store: Any,
    big: Path,
    n: int,
    work: Path,
    rng: random.Random,
    live: Server,
    fresh: Server,
    expected: int,
) -> dict[str, Any]:
    """Kill build ``n`` at its trigger; what CURRENT, the running server and a fresh one show."""
    before = store.current_version()
    t = _kill_build(sr, big, TRIGGERS[n % 3], work / f"build-kill-{n}.log", rng)
    t["current_unchanged"] = store.current_version() == before
    t["leftover_tmp"] = _tmp_count(store)
    if t["completed_before_kill"]:
        expected = len(store.load().products)
    t["expected_products"] = expected
    t["live_server_products"] = _wait_count(live, expected)
    t["fresh_start_s"] = round(fresh.start(), 2)
    t["fresh_server_products"] = fresh.products()
    t["fresh_search_hits"] = len(fresh.get("/v1/search", q="notebook", k=5).json()["results"])
    t["api_product_served"] = fresh.serves(API_ID)
    t["fresh_log"] = fresh.log_notes()
    fresh.kill()
    return t


def _final_build(
    sr: Shoprank, store: Any, big: Path, work: Path, live: Server, fresh: Server
) -> dict[str, Any]:
    """A build left alone: it must succeed over the leftovers and the running server switch to it."""
    before = store.current_version()
    t0 = time.monotonic()
    out = sr.index(big, work / "build-final.log")
    final: dict[str, Any] = {
        "seconds": round(time.monotonic() - t0, 1),
        "documents": out["documents"],
        "current_changed": store.current_version() != before,
        "leftover_tmp_after": _tmp_count(store),
        "expected_products": out["documents"] + 1,
    }
    t1 = time.monotonic()
    final["live_server_products"] = _wait_count(live, final["expected_products"], wait=60)
    final["live_switch_s"] = round(time.monotonic() - t1, 1)
    final["api_product_carried"] = live.serves(API_ID)
    final["fresh_start_s"] = round(fresh.start(), 2)
    final["fresh_server_products"] = fresh.products()
    return final


def _wait_count(srv: Server, expected: int, wait: float = 5.0) -> Any:
    """The server's product count, after waiting up to ``wait`` s for it to reach ``expected``."""
    t0 = time.monotonic()
    while (got := srv.products()) != expected and time.monotonic() - t0 < wait:
        time.sleep(0.25)
    return got
