"""``bench.crash_durability``'s write rounds: writer threads post events, products (and reviews)
while the server is SIGKILL'ed and started again; every acknowledged write must be in the store."""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.live.server import KEY, Server, Shoprank, drop_opensearch, server_exceptions

ACTIONS = ("impression", "click", "add_to_cart", "purchase")
KINDS = ("events", "products", "reviews")
DONE = {"events": "accepted", "products": "written", "reviews": "added"}  # the answer's count field


class Ledger:
    """Every id the writers sent, by kind and by what the client saw; unanswered batches kept whole."""

    OUTCOMES = ("acked", "unanswered", "not_sent", "refused")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: dict[tuple[str, str], set[str]] = {(k, o): set() for k in KINDS for o in self.OUTCOMES}
        self.open_batches: dict[str, list[list[str]]] = {k: [] for k in KINDS}
        self.statuses: Counter[str] = Counter()

    def add(self, kind: str, outcome: str, ids: list[str], status: str = "") -> None:
        with self.lock:
            self.ids[kind, outcome].update(ids)
            if outcome == "unanswered":
                self.open_batches[kind].append(ids)
            if status:
                self.statuses[status] += 1

    def merge(self, other: Ledger) -> None:
        for key, ids in other.ids.items():
            self.ids[key] |= ids


@dataclass(frozen=True)
class Target:
    """The server the writers hit and what they write: the catalog ids they refer to, the kinds."""

    sr: Shoprank
    srv: Server
    backend: str
    run: str  # this run's tag, the prefix of every id it writes
    catalog_ids: list[str]
    kinds: list[str]


def body(kind: str, ids: list[str], rng: random.Random, catalog_ids: list[str]) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    if kind == "events":
        return {"events": [_event(i, rng.choice(catalog_ids), rng, now_ms) for i in ids]}
    if kind == "products":
        return {"products": [product(i, rng) for i in ids]}
    return {
        "reviews": [{"product_id": rng.choice(catalog_ids), "text": f"review {i}: works fine"} for i in ids]
    }


def _event(client: str, pid: str, rng: random.Random, now_ms: int) -> dict[str, Any]:
    return {
        "action_name": rng.choice(ACTIONS),
        "client_id": client,
        "session_id": client + "-s",
        "timestamp": now_ms,
        "event_attributes": {"object": {"object_id": pid, "object_id_field": "id"}},
    }


def product(pid: str, rng: random.Random) -> dict[str, Any]:
    return {
        "id": pid,
        "title": f"Crash test notebook bag {pid}",
        "description": "written by bench.crash_durability while the server was killed",
        "brand": "Crashtest",
        "category": "Bench",
        "price": round(rng.uniform(5, 500), 2),
    }


def _writer(
    base: str,
    tag: str,
    catalog_ids: list[str],
    kinds: list[str],
    led: Ledger,
    stop: threading.Event,
    seed: int,
) -> None:
    rng, seq = random.Random(seed), 0
    with httpx.Client(base_url=base, timeout=10.0, headers={"X-API-Key": KEY}) as c:
        for it in range(100_000):  # bounded; the stop event ends it long before
            if stop.is_set():
                return
            kind = kinds[it % len(kinds)]
            n = rng.randint(10, 100) if kind == "events" else rng.randint(1, 10)
            ids = [f"{tag}-{seq + i}" for i in range(n)]
            seq += n
            try:
                r = c.post(f"/v1/{kind}", json=body(kind, ids, rng, catalog_ids))
            except httpx.ConnectError:  # nothing was sent: the server is down
                led.add(kind, "not_sent", ids)
                time.sleep(0.05)
                continue
            except httpx.TransportError:  # sent, no answer: in flight at the kill
                led.add(kind, "unanswered", ids)
                continue
            done = r.json().get(DONE[kind]) if r.status_code == 200 else None
            if done == n:
                led.add(kind, "acked", ids)
            else:
                led.add(kind, "refused", ids, f"{kind} {r.status_code}" + (f" ({done}/{n})" if done else ""))


def _stored(sr: Shoprank, led: Ledger) -> dict[str, set[str]]:
    """Which ids the store holds now: events (by client id), products, reviews (embedded only)."""
    from indexer.durable_log import read_records
    from plugin_api.backends import factory

    s = sr.settings()
    f = factory(s.backend)
    backend = f.search(s)
    sent = sorted(set().union(*(led.ids["products", o] for o in Ledger.OUTCOMES)))
    products: set[str] = set()
    for i in range(0, len(sent), 500):
        products |= set(backend.fetch(sent[i : i + 500]))
    path = s.embedded_dir / "reviews.jsonl"
    reviews = {str(d.get("text", "")).split(":")[0][len("review ") :] for _, d in read_records(path)}
    return {"events": {e.client_id for e in f.events(s).events()}, "products": products, "reviews": reviews}


def _round_row(led: Ledger, total: Ledger, have: dict[str, set[str]], kinds: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for k in kinds:
        batches = led.open_batches[k]
        row[k] = {
            "acked": len(led.ids[k, "acked"]),
            "lost": len(led.ids[k, "acked"] - have[k]),
            "lost_all_rounds": len(total.ids[k, "acked"] - have[k]),
            "unanswered": len(led.ids[k, "unanswered"]),
            "unanswered_applied": len(led.ids[k, "unanswered"] & have[k]),
            "unanswered_batches": len(batches),
            "unanswered_batches_partly_applied": sum(
                0 < len(have[k].intersection(b)) < len(b) for b in batches
            ),
            "refused_or_unsent_applied": len((led.ids[k, "refused"] | led.ids[k, "not_sent"]) & have[k]),
        }
    row["non_200"] = dict(led.statuses)
    return row


def write_kills(args: argparse.Namespace, work: Path, backend: str, rng: random.Random) -> dict[str, Any]:
    """``args.rounds`` rounds of writes and a kill against one backend's server."""
    from indexer.catalog import read_catalog

    alias = f"bench-crash-{os.getpid()}" if backend == "opensearch" else ""
    sr = Shoprank(work, work / f"writes-{backend}", backend, alias, args.sentiment_model)
    built = sr.index(args.catalog, work / f"index-{backend}.log")
    target = Target(
        sr,
        Server(sr, backend),
        backend,
        f"cd{int(time.time()) % 100000}",
        [p.id for p in read_catalog(args.catalog).products][:1000],
        ["events", "events", "products"] + (["reviews"] if args.sentiment_model else []),
    )
    rows: list[dict[str, Any]] = []
    total = Ledger()
    try:
        first_ready = target.srv.start()
        for rnd in range(1, args.rounds + 1):
            rows.append(_kill_round(target, rnd, args.threads, rng, total))
    finally:
        target.srv.kill()
        if alias:
            drop_opensearch(sr)
    return {
        "backend": backend,
        "catalog_products": built["documents"],
        "first_start_s": round(first_ready, 2),
        "rows": rows,
        "server_exceptions": server_exceptions(work, f"serve-{backend}-*.log"),
    }


def _kill_round(t: Target, rnd: int, threads: int, rng: random.Random, total: Ledger) -> dict[str, Any]:
    """One round: writers, SIGKILL after 1–4 s, restart; then what the store and the API hold."""
    led = Ledger()
    delay, ready_s = _write_then_kill(t, rnd, threads, rng, led)
    total.merge(led)
    row: dict[str, Any] = {
        "round": rnd,
        "kill_after_s": round(delay, 2),
        "restart_to_ready_s": round(ready_s, 2),
    }
    row |= _round_row(led, total, _stored(t.sr, total), sorted(set(t.kinds), key=KINDS.index))
    return row | _after_restart(t, rnd, rng, led)


def _write_then_kill(
    t: Target, rnd: int, threads: int, rng: random.Random, led: Ledger
) -> tuple[float, float]:
    """Start the writer threads, SIGKILL the server after a random 1–4 s, stop the writers and
    start the server again; the delay and the seconds to ready."""
    stop = threading.Event()
    try:
        jobs = [(f"{t.run}-{t.backend[0]}{rnd}t{n}", rng.randrange(2**31)) for n in range(threads)]
        writers = [
            threading.Thread(
                target=_writer, args=(t.srv.base, tag, t.catalog_ids, t.kinds, led, stop, seed), daemon=True
            )
            for tag, seed in jobs
        ]
        for th in writers:
            th.start()
        delay = rng.uniform(1.0, 4.0)
        time.sleep(delay)
        t.srv.kill()
        stop.set()
        for th in writers:
            th.join(60)
        return delay, t.srv.start()
    finally:
        stop.set()


def _after_restart(t: Target, rnd: int, rng: random.Random, led: Ledger) -> dict[str, Any]:
    """What the restarted server answers: its counts, a sample of acked products, a new write."""
    srv = t.srv
    ready = srv.get("/readyz").json()
    row: dict[str, Any] = {"api_products": ready.get("products"), "api_events": ready.get("events")}
    row["api_sample_missing"] = sum(not srv.serves(p) for p in sorted(led.ids["products", "acked"])[:20])
    after = body("events", [f"{t.run}-after-{t.backend}{rnd}"], rng, t.catalog_ids)
    row["write_after_restart"] = httpx.post(
        srv.base + "/v1/events", json=after, headers={"X-API-Key": KEY}, timeout=30
    ).status_code
    row["restart_log"] = srv.log_notes()
    return row
