"""Nothing lost on kill -9: the issue-12 durability checks, replayed against real processes.

Everything runs as real ``shoprank`` processes on loopback, with the hashing embedder (no model):

* ``writes`` (per backend, ``--rounds`` rounds): ``shoprank serve`` on an index of ``--catalog``;
  ``--threads`` clients post batches of UBI events (admin key, timestamps = now, one unique
  ``client_id`` per event, ``object_id`` = catalog ids) and product upserts (new unique ids); after
  a random 1–4 s the server gets SIGKILL and is started again on the same data. Every write that
  was answered 200 must be in the store afterwards (read back through the store classes; the
  API's counts and a sample of products are checked too); writes the client got no answer for
  may or may not be there (counted, with batches applied in part); writes refused (non-200) or
  never sent must not be. Reviews are posted only with ``--sentiment-model`` (the service
  refuses them without one).
* ``build``: ``shoprank index`` of ``--build-catalog`` (Chorus, or the fixture repeated) gets
  SIGKILL at three moments in turn: after 1 s (reading the catalog), just after it prints
  ``indexing …`` (embedding) and while its ``.tmp`` version folder is being written. After each,
  CURRENT must still name the previous version, and a server already running and one started
  afresh must serve the old product count (including a product written through the API before
  the kills); then a build left alone must succeed despite the leftovers, and the running server
  must switch to it with the API product carried over.

A SIGKILL'ed process loses what it had not handed to the kernel; a power cut would also lose
what was not fsync'ed, which this does not test. ``--backend opensearch`` adds the ``writes``
rounds against the node at 127.0.0.1:9200 (own alias and UBI prefix, dropped at the end) when one
answers; it never starts or stops a node. Writes ``OUT/crash_durability.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.provenance import CHORUS, REPO, git_commit
from bench.report import table
from ranker.evaluation.relevance import machine_description

FIXTURE = REPO / "tests" / "fixtures" / "catalog.jsonl"
NODE = "http://127.0.0.1:9200"
KEY = "bench-crash-key"
ACTIONS = ("impression", "click", "add_to_cart", "purchase")
KINDS = ("events", "products", "reviews")
DONE = {"events": "accepted", "products": "written", "reviews": "added"}  # the answer's count field
TRIGGERS = ("1s", "indexing", "writing")
HASHING = ("--embedder", "hashing")
EXC = re.compile(r"^[A-Za-z_.]*(Error|Exception|Exit): ")
NO_REVIEWS = "not exercised: no sentiment model (POST /v1/reviews needs one; pass --sentiment-model)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.wait(30)


class Shoprank:
    """Runs ``shoprank`` subcommands with the bench's environment (no inherited SHOPRANK_*)."""

    def __init__(
        self, work: Path, data: Path, backend: Any = "embedded", alias: str = "", sentiment: Any = None
    ):
        self.work, self.data, self.backend, self.alias = work, data, backend, alias
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPRANK_")}
        self.env.update(
            SHOPRANK_API_KEYS=json.dumps([KEY]),
            SHOPRANK_EMBEDDER="hashing",
            SHOPRANK_CACHE_DIR=str(work / "cache"),
            SHOPRANK_BACKEND=backend,
            HF_HUB_OFFLINE="1",
        )
        if alias:
            self.env.update(SHOPRANK_INDEX_ALIAS=alias, SHOPRANK_UBI_PREFIX=alias)
        if sentiment:
            self.env["SHOPRANK_SENTIMENT_PATH"] = str(sentiment)
        data.mkdir(parents=True, exist_ok=True)

    def popen(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "plugin_api.cli.main", *args, "--data-dir", str(self.data), *HASHING]
        with open(log, "ab") as fh:
            return subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)

    def index(self, catalog: Path, log: Path, timeout: float = 600) -> dict[str, Any]:
        """Run ``shoprank index`` to the end; its JSON summary."""
        p = self.popen(["index", "--catalog", str(catalog), "--quiet"], log)
        try:
            rc = p.wait(timeout)
        finally:
            _kill(p)
        last = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("{")]
        if rc != 0 or not last:
            raise RuntimeError(f"shoprank index failed (rc {rc}); see {log}")
        return dict(json.loads(last[-1]))

    def settings(self) -> Any:
        from plugin_api.settings import Settings

        s = Settings(
            backend=self.backend, data_dir=self.data, cache_dir=self.work / "cache", embedder="hashing"
        )
        return s.model_copy(update={"index_alias": self.alias, "ubi_prefix": self.alias}) if self.alias else s


class Server:
    """One ``shoprank serve`` process at a time on a fixed port; ``start`` again after ``kill``."""

    def __init__(self, sr: Shoprank, name: str):
        self.sr, self.name, self.port = sr, name, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = sr.work / f"serve-{name}.log"

    def start(self, timeout: float = 180) -> float:
        """Seconds from the process start to the first 200 from /readyz."""
        self.starts += 1
        self.log = self.sr.work / f"serve-{self.name}-{self.starts}.log"
        t0 = time.monotonic()
        self.proc = self.sr.popen(["serve", "--port", str(self.port)], self.log)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited ({self.proc.returncode}); see {self.log}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server {self.name} not ready after {timeout:.0f} s; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None:
            _kill(self.proc)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.base + path, params=params, timeout=30)

    def products(self) -> Any:
        return self.get("/readyz").json().get("products")

    def serves(self, pid: str) -> bool:
        return self.get(f"/v1/recommend/similar/{pid}", k=1).status_code == 200

    def log_notes(self) -> dict[str, int]:
        """Lines of this start's log worth a look: torn or unreadable records, tracebacks."""
        text = self.log.read_text(errors="replace").lower()
        return {k: n for k in ("torn", "unreadable", "quarantine", "traceback") if (n := text.count(k))}


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


def _body(kind: str, ids: list[str], rng: random.Random, catalog_ids: list[str]) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    if kind == "events":
        return {"events": [_event(i, rng.choice(catalog_ids), rng, now_ms) for i in ids]}
    if kind == "products":
        return {"products": [_product(i, rng) for i in ids]}
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


def _product(pid: str, rng: random.Random) -> dict[str, Any]:
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
                r = c.post(f"/v1/{kind}", json=_body(kind, ids, rng, catalog_ids))
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
    from indexer.catalog import read_catalog

    alias = f"bench-crash-{os.getpid()}" if backend == "opensearch" else ""
    sr = Shoprank(work, work / f"writes-{backend}", backend, alias, args.sentiment_model)
    built = sr.index(args.catalog, work / f"index-{backend}.log")
    catalog_ids = [p.id for p in read_catalog(args.catalog).products][:1000]
    kinds = ["events", "events", "products"] + (["reviews"] if args.sentiment_model else [])
    srv, rows, total = Server(sr, backend), [], Ledger()
    run, stop = f"cd{int(time.time()) % 100000}", threading.Event()
    try:
        first_ready = srv.start()
        for rnd in range(1, args.rounds + 1):
            led, stop = Ledger(), threading.Event()
            jobs = [(f"{run}-{backend[0]}{rnd}t{t}", rng.randrange(2**31)) for t in range(args.threads)]
            threads = [
                threading.Thread(
                    target=_writer, args=(srv.base, tag, catalog_ids, kinds, led, stop, seed), daemon=True
                )
                for tag, seed in jobs
            ]
            for th in threads:
                th.start()
            delay = rng.uniform(1.0, 4.0)
            time.sleep(delay)
            srv.kill()
            stop.set()
            for th in threads:
                th.join(60)
            ready_s = srv.start()
            total.merge(led)
            row: dict[str, Any] = {
                "round": rnd,
                "kill_after_s": round(delay, 2),
                "restart_to_ready_s": round(ready_s, 2),
            }
            row |= _round_row(led, total, _stored(sr, total), sorted(set(kinds), key=KINDS.index))
            ready = srv.get("/readyz").json()
            row["api_products"], row["api_events"] = ready.get("products"), ready.get("events")
            row["api_sample_missing"] = sum(
                not srv.serves(p) for p in sorted(led.ids["products", "acked"])[:20]
            )
            after = _body("events", [f"{run}-after-{backend}{rnd}"], rng, catalog_ids)
            row["write_after_restart"] = httpx.post(
                srv.base + "/v1/events", json=after, headers={"X-API-Key": KEY}, timeout=30
            ).status_code
            row["restart_log"] = srv.log_notes()
            rows.append(row)
    finally:
        stop.set()
        srv.kill()
        if alias:
            _drop_opensearch(sr)
    return {
        "backend": backend,
        "catalog_products": built["documents"],
        "first_start_s": round(first_ready, 2),
        "rows": rows,
        "server_exceptions": _exceptions(work, f"serve-{backend}-*.log"),
    }


def _exceptions(work: Path, pattern: str) -> dict[str, int]:
    """The exceptions the servers logged (a traceback's last line) over every start, killed ones too,
    with the temporary folder shown as WORK and long numbers as N."""
    found: Counter[str] = Counter()
    for log in sorted(work.glob(pattern)):
        lines = log.read_text(errors="replace").replace(str(work), "WORK").splitlines()
        found.update(re.sub(r"\d{3,}", "N", ln)[:160] for ln in lines if EXC.match(ln))
    return dict(found)


def _drop_opensearch(sr: Shoprank) -> None:
    from plugin_api.backends import factory

    store: Any = factory("opensearch").store(sr.settings())
    try:
        store.drop()
    finally:
        for name in (f"{sr.alias}_events", f"{sr.alias}_queries", f"{sr.alias}-reviews"):
            httpx.delete(f"{NODE}/{name}", params={"ignore_unavailable": "true"}, timeout=30)


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
        _kill(p)
    return {
        "trigger": trigger,
        "killed_after_s": round(after, 2),
        "completed_before_kill": finished,
        "tmp_files_at_kill": files,
    }


def build_kills(args: argparse.Namespace, work: Path, rng: random.Random) -> dict[str, Any]:
    from indexer.embedded.store import EmbeddedStore

    big = args.build_catalog or (
        CHORUS if CHORUS.exists() else _repeated_catalog(work / "repeated.jsonl", 700)
    )
    sr = Shoprank(work, work / "build")
    store = EmbeddedStore(sr.data / "index")
    base = sr.index(args.catalog, work / "build-0.log")["documents"]
    live, fresh, api_id = Server(sr, "build-live"), Server(sr, "build-fresh"), "crash-build-api-1"
    tmp_count = lambda: sum(v.name.endswith(".tmp") for v in store.versions_dir.iterdir())  # noqa: E731
    trials: list[dict[str, Any]] = []
    try:
        live.start()
        httpx.post(
            live.base + "/v1/products",
            json={"products": [_product(api_id, rng)]},
            headers={"X-API-Key": KEY},
            timeout=30,
        ).raise_for_status()
        expected = base + 1
        for n in range(args.build_kills):
            before = store.current_version()
            t = _kill_build(sr, big, TRIGGERS[n % 3], work / f"build-kill-{n}.log", rng)
            t["current_unchanged"] = store.current_version() == before
            t["leftover_tmp"] = tmp_count()
            if t["completed_before_kill"]:
                expected = len(store.load().products)
            t["expected_products"] = expected
            t["live_server_products"] = _wait_count(live, expected)
            t["fresh_start_s"] = round(fresh.start(), 2)
            t["fresh_server_products"] = fresh.products()
            t["fresh_search_hits"] = len(fresh.get("/v1/search", q="notebook", k=5).json()["results"])
            t["api_product_served"] = fresh.serves(api_id)
            t["fresh_log"] = fresh.log_notes()
            fresh.kill()
            trials.append(t)
        before = store.current_version()
        t0 = time.monotonic()
        out = sr.index(big, work / "build-final.log")
        final: dict[str, Any] = {
            "seconds": round(time.monotonic() - t0, 1),
            "documents": out["documents"],
            "current_changed": store.current_version() != before,
            "leftover_tmp_after": tmp_count(),
            "expected_products": out["documents"] + 1,
        }
        t1 = time.monotonic()
        final["live_server_products"] = _wait_count(live, final["expected_products"], wait=60)
        final["live_switch_s"] = round(time.monotonic() - t1, 1)
        final["api_product_carried"] = live.serves(api_id)
        final["fresh_start_s"] = round(fresh.start(), 2)
        final["fresh_server_products"] = fresh.products()
    finally:
        live.kill()
        fresh.kill()
    return {
        "server_exceptions": _exceptions(work, "serve-build-*.log"),
        "catalog": str(args.catalog),
        "catalog_products": base,
        "build_catalog": str(big),
        "trials": trials,
        "final": final,
    }


def _wait_count(srv: Server, expected: int, wait: float = 5.0) -> Any:
    """The server's product count, after waiting up to ``wait`` s for it to reach ``expected``."""
    t0 = time.monotonic()
    while (got := srv.products()) != expected and time.monotonic() - t0 < wait:
        time.sleep(0.25)
    return got


def _node_answers() -> bool:
    try:
        return httpx.get(NODE, timeout=3).status_code == 200
    except httpx.TransportError:
        return False


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="shoprank-crash-"))
    t0 = time.monotonic()
    try:
        writes = [write_kills(args, work, "embedded", rng)]
        opensearch = "not requested (--backend opensearch)"
        if args.backend == "opensearch":
            opensearch = "run" if _node_answers() else f"skipped: no node at {NODE}"
            writes += [write_kills(args, work, "opensearch", rng)] if opensearch == "run" else []
        build = None if args.skip_build else build_kills(args, work, rng)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.crash_durability " + " ".join(sys.argv[1:]),
        "commit": git_commit(),
        "machine": machine_description(),
        "parameters": {
            "catalog": str(args.catalog),
            "rounds": args.rounds,
            "threads": args.threads,
            "build_kills": 0 if args.skip_build else args.build_kills,
            "backend": args.backend,
            "seed": args.seed,
            "embedder": "hashing",
            "sentiment_model": str(args.sentiment_model) if args.sentiment_model else None,
        },
        "seconds": round(time.monotonic() - t0, 1),
        "reviews": "posted and checked (embedded)" if args.sentiment_model else NO_REVIEWS,
        "opensearch": opensearch,
        "writes": writes,
        "build": build,
        "work_dir": str(work) if args.keep else None,
    }


def _table(rows: list[dict[str, Any]]) -> list[str]:
    """One Markdown table of flat rows: the keys are the columns; a dict shows as ``key value, ...``."""

    def show(v: Any) -> Any:
        return (", ".join(f"{k} {x}" for k, x in v.items()) or "none") if isinstance(v, dict) else v

    return table([k.replace("_", " ") for k in rows[0]], [[show(v) for v in r.values()] for r in rows])


def _exc_text(found: dict[str, int]) -> str:
    return "; ".join(f"{n} × `{e}`" for e, n in found.items()) or "none"


def _cell(c: dict[str, Any]) -> str:
    """acked / lost (all rounds) / unanswered→applied, and batches applied in part."""
    partly = c["unanswered_batches_partly_applied"]
    return (
        f"{c['acked']} / {c['lost']} ({c['lost_all_rounds']}) / {c['unanswered']}→{c['unanswered_applied']}"
        + (f", {partly} batch(es) in part" if partly else "")
    )


def markdown(r: dict[str, Any]) -> str:
    p = r["parameters"]
    lines = [
        "# Durability under kill -9",
        "",
        f"{r['date']} · `{r['command']}` · commit {r['commit']} · {r['machine']} · embedder hashing · "
        f"{p['rounds']} rounds × {p['threads']} writer threads · seed {p['seed']} · {r['seconds']} s",
        "",
        "## Server killed during writes",
        "",
        f"Reviews: {r['reviews']}. OpenSearch: {r['opensearch']}. Per kind: acked / lost (lost over all "
        "rounds so far) / unanswered→applied; `refused or unsent applied` sums the kinds.",
        "",
    ]
    for w in r["writes"]:
        lines.append(f"### {w['backend']}: {w['catalog_products']} catalog products, first start ")
        lines[-1] += f"{w['first_start_s']} s to ready"
        rows = []
        for x in w["rows"]:
            kinds = [k for k in KINDS if k in x]
            rows.append(
                {k: _cell(v) if k in KINDS else v for k, v in x.items()}
                | {"refused_or_unsent_applied": sum(x[k]["refused_or_unsent_applied"] for k in kinds)}
            )
        lines += ["", *(_table(rows) if rows else [])]
        exc = w.get("server_exceptions") or {}
        lines += [
            f"Exceptions in the server logs: {'; '.join(f'{n} × `{e}`' for e, n in exc.items()) or 'none'}",
            "",
        ]
    b = r["build"]
    if b:
        f = b["final"]
        lines += [
            "## Index build killed mid-way",
            "",
            f"Live version: {b['catalog']} ({b['catalog_products']} products) plus one product written "
            f"through the API; the killed builds index {b['build_catalog']}; `tmp files at kill` in bytes.",
            "",
            *_table(b["trials"]),
            f"Then a build left alone: {f['documents']} products in {f['seconds']} s; CURRENT switched: "
            f"{f['current_changed']}; leftover .tmp folders after it: {f['leftover_tmp_after']}; the running "
            f"server serves {f['live_server_products']} products (expected {f['expected_products']}, "
            f"{f['live_switch_s']} s after the build); API product carried: {f['api_product_carried']}; a "
            f"fresh server serves {f['fresh_server_products']} (ready in {f['fresh_start_s']} s). "
            f"Exceptions in the server logs: {_exc_text(b['server_exceptions'])}.",
            "",
        ]
    lines += [
        "acked = answered 200 with every item taken; lost = acked but not in the store after the restart "
        "(must be 0); unanswered = the connection broke with the request in flight (applied or not, both "
        "fine; “in part” = a batch of which only some items were stored); refused or unsent applied = "
        "non-200 or never-sent writes found in the store (must be 0). SIGKILL only: a power cut is not "
        "tested.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", type=Path, default=FIXTURE, help="catalog of the live index")
    ap.add_argument(
        "--build-catalog",
        type=Path,
        help="catalog of the killed builds (default: Chorus, else the fixture repeated 700 times)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=3, help="writer threads (the service admits 4 at once)")
    ap.add_argument(
        "--build-kills", type=int, default=3, help="killed builds (at 1s, indexing, writing in turn)"
    )
    ap.add_argument("--skip-build", action="store_true", help="only the write rounds")
    ap.add_argument(
        "--backend",
        choices=["embedded", "opensearch"],
        default="embedded",
        help="opensearch: also the write rounds against 127.0.0.1:9200 when a node answers",
    )
    ap.add_argument(
        "--sentiment-model", type=Path, help="post reviews too (`shoprank train sentiment` folder)"
    )
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "crash_durability")
    args = ap.parse_args(argv)
    r = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "crash_durability.json").write_text(json.dumps(r, indent=2) + "\n")
    md = markdown(r)
    (args.out / "crash_durability.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
