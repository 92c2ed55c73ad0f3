"""Serving under load: Debian's ``wrk`` against ``shoprank serve`` on loopback.

Starts the service as a real process over a copy of the embedded index (``shoprank index``;
``--reranker DIR`` adds the cross-encoder to ``full``), waits for ``/readyz``, times the first
search after it, then per scenario and connection count runs ``wrk -t2 -cN`` for ``--seconds``
(after a 3 s warm-up), cycling through the scenario's paths with a generated Lua script:

* ``search-hybrid``: ``GET /v1/search?pipeline=hybrid`` over the 100 dev queries;
* ``search-full``: ``GET /v1/search`` (the full pipeline: query understanding, fusion with the
  shop's signals, MMR diversity) over the same queries;
* ``similar``: ``GET /v1/recommend/similar/{id}`` over 200 products of the index;
* ``suggest``: ``GET /v1/suggest`` over every keystroke of the dev queries;
* ``write-while-reading``: ``search-full`` while a second ``wrk`` (one thread, 16 connections,
  a Lua ``delay()`` that keeps a steady schedule) streams ``PUT /v1/products/{id}`` price and stock updates at ``--write-rate`` per
  second over 500 products of the index (the text is unchanged, so the product-embedding cache
  answers; every write still changes the index and invalidates the result cache). The row
  carries the writer's own figures (``writes``); compare its read latency with ``search-full``.

The searches cycle through 100 queries, so with the result cache on (the default) all but their
first pass are cache hits: ``--no-result-cache --label " uncached"`` measures the pipelines.

* ``node-bm25`` / ``node-knn`` (``--backend opensearch``): the BM25 ``multi_match`` and the
  ``knn`` bodies shoprank's retriever sends for each dev query (top ``candidates``; the query's
  MiniLM vector), POSTed by ``wrk`` straight to the node's ``_search``: OpenSearch's own latency
  for the same retrieval, the floor any plugin on that node starts from.

``--backend opensearch`` serves over the node's index (build it first: ``shoprank index --backend
opensearch``; events go to a fresh ``bench-serve-*`` UBI prefix); the rows say the backend.

``--workers N`` serves with N worker processes over the shared embedded index (the rows say so),
after every worker answered.

wrk costs little next to the service but shares the two cores with it. Reports requests/s,
wrk's latency p50/p90/p95/p99 and the non-2xx answers per row. Merges one row per (scenario,
connections) into ``OUT/serve_load.json`` and renders ``OUT/serve_load.md``.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import Run, RunNotes, add_judgments, add_out, parser, rows_of, write_results
from bench.live.overload_load import run_wrk, write_paths_lua
from bench.live.wrk_serve import serve, write_posts_lua, write_puts_lua, wrk_row

SCENARIOS = (
    "search-hybrid",
    "search-full",
    "similar",
    "suggest",
    "write-while-reading",
    "node-bm25",
    "node-knn",
)
NODE = ("node-bm25", "node-knn")  # straight to OpenSearch: the peer's floor, no shoprank in between
WRITING = "write-while-reading"
KEY = "bench-writer-key"
WRITERS = 16  # the writer's connections: enough to keep its rate while writes queue behind reads
FIRST = "first search after /readyz"
CACHE = {True: "on", False: "off"}  # rows measured before the result cache existed: "none yet"


def _paths(queries: list[str], ids: list[str]) -> dict[str, list[str]]:
    quote = urllib.parse.quote
    typed = [q[:n] for q in queries for n in range(1, len(q) + 1) if q[:n].strip()]
    return {
        "search-hybrid": [f"/v1/search?pipeline=hybrid&q={quote(q)}" for q in queries],
        "search-full": [f"/v1/search?q={quote(q)}" for q in queries],
        "similar": [f"/v1/recommend/similar/{quote(i, safe='')}?k=10" for i in ids],
        "suggest": [f"/v1/suggest?q={quote(q)}" for q in typed],
    }


def _updates(index: Path, n: int, seed: int = 11) -> list[tuple[str, dict[str, Any]]]:
    """PUTs of ``n`` products of the live version with a new price and stock flag (text kept)."""
    version = (index / "CURRENT").read_text().strip()
    with open(index / "versions" / version / "products.jsonl", encoding="utf-8") as fh:
        products = [json.loads(line) for line in fh if line.strip()]
    rng = random.Random(seed)
    out = []
    for p in rng.sample(products, min(n, len(products))):
        body = {k: v for k, v in p.items() if k not in ("id", "reviews")}
        body["price"] = round(float(p.get("price") or 10.0) * rng.uniform(0.9, 1.1), 2)
        body["in_stock"] = rng.random() < 0.9
        out.append((f"/v1/products/{urllib.parse.quote(p['id'], safe='')}", body))
    return out


def _while_writing(
    base: str, read_lua: Path, write_lua: Path, n: int, seconds: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reads' ``wrk`` row while the writer's ``wrk`` runs (started first, stopped after)."""
    writer: dict[str, Any] = {}

    def write() -> None:
        writer.update(run_wrk(base, write_lua, WRITERS, seconds + 5.0, threads=1, timeout="10s"))

    t = threading.Thread(target=write)
    t.start()
    time.sleep(1.0)
    try:
        wrk_row(base, read_lua, n, 3.0)  # warm-up, writes flowing
        reads = wrk_row(base, read_lua, n, seconds)
    finally:
        t.join()
    return reads, writer


def _node_posts(queries: list[str]) -> dict[str, Any]:
    """The node's URL and, per node scenario, (``/<alias>/_search``, body) for every query: the
    bodies shoprank's OpenSearch backend builds (BM25 with its synonym clause; kNN with its
    ``ef_search``), top ``candidates``."""
    from plugin_api.backends import factory, query_embedder_from
    from plugin_api.settings import Settings
    from ranker.base import Filters
    from ranker.retrieval.opensearch import OpenSearchBackend

    s = Settings(backend="opensearch")
    backend = factory("opensearch").search(s)
    assert isinstance(backend, OpenSearchBackend)
    vectors = query_embedder_from(s).encode(queries)
    path = f"/{s.index_alias}/_search"
    return {
        "url": s.opensearch_url.rstrip("/"),
        "node-bm25": [(path, backend.lexical_body(q, s.candidates, Filters())) for q in queries],
        "node-knn": [(path, backend.knn_body(v, s.candidates, Filters())) for v in vectors],
    }


def wait_for_workers(base: str, n: int, timeout_s: float = 300.0) -> None:
    """Until fresh connections have reached ``n`` distinct workers (``/metrics`` names each one):
    a worker accepts connections once its start-up (index, models, warm-up) is done."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {n} workers answered within {timeout_s:.0f} s")
        with httpx.Client(base_url=base, timeout=30.0) as client:
            found = re.search(r'shoprank_worker\{pid="(\d+)"\}', client.get("/metrics").text)
        if found:
            seen.add(found.group(1))
        time.sleep(0.1)


def ok_rps(row: dict[str, Any]) -> float:
    """Answers/s that were 200s: admission control's fast 429s (more connections than it admits)
    count in wrk's req/s but serve nobody."""
    done = int(row["requests"])
    return float(row["rps"]) * int(row["statuses"].get("2xx", 0)) / done if done else 0.0


def _markdown(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    lines = [
        "# Serving under load",
        "",
        "`wrk -t2` on loopback against `shoprank serve` (embedded index of the Chorus catalog, MiniLM "
        "queries on onnxruntime), cycling through each scenario's paths (`bench/serve_load.py`); wrk and "
        "the service share the two cores. 2xx req/s: the answers that were 200 (with more connections "
        "than the admission control admits, its fast 429s count in wrk's req/s and in its latencies).",
        "",
        "| scenario | result cache | connections | req/s | 2xx req/s | p50 ms | p90 ms | p95 ms | p99 ms "
        "| non-2xx | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first: list[dict[str, Any]] = []
    writes: list[str] = []
    for r in rows_of(doc):
        if r["scenario"].startswith(FIRST):
            first.append(r)
            continue
        if "writes" in r:
            w = r["writes"]
            writes.append(
                f"{r['scenario']} ×{r['connections']}: the writer made {w['ok_rps']} accepted writes/s "
                f"(p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms, {w['requests'] - w['statuses']['2xx']} non-2xx) {notes.mark(r)}"
            )
        lines.append(
            f"| {r['scenario']} | {CACHE.get(r.get('result_cache'), 'none yet')} | {r['connections']} | {r['rps']} | {ok_rps(r):.1f} | {r['p50_ms']} | {r['p90_ms']} "
            f"| {r['p95_ms']} | {r['p99_ms']} | {r['non_200']} | {notes.mark(r)} |"
        )
    if writes:
        lines += ["", "Writes during `write-while-reading`:", "", *(f"- {w}" for w in writes)]
    for r in first:
        lines += ["", f"{FIRST}: {r['latency_ms']} ms (`{r['path']}`) {notes.mark(r)}"]
    return "\n".join([*lines, "", *notes.lines(), ""])


def main(argv: list[str] | None = None) -> int:
    ap = parser("serve_load", __doc__)
    add_judgments(ap)
    add_out(ap, "serve_load")
    ap.add_argument("--connections", default="8,64", help="comma-separated wrk connection counts")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--write-rate", type=float, default=50.0, help="writes/s of write-while-reading")
    ap.add_argument("--reranker", type=Path, help="serve with this cross-encoder (full pipeline)")
    ap.add_argument("--reranker-runtime", default="onnx-int8")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="serve --workers N (rows say it; scenario names end in ' ×N workers')",
    )
    ap.add_argument(
        "--backend",
        choices=("embedded", "opensearch"),
        default="embedded",
        help="the service's backend (opensearch: the node at SHOPRANK_OPENSEARCH_URL, indexed first)",
    )
    ap.add_argument("--label", default="", help="appended to the scenario names (e.g. ' +ce int8')")
    ap.add_argument(
        "--no-result-cache",
        action="store_true",
        help="serve with SHOPRANK_RESULT_CACHE_SIZE=0 (every search through the pipeline; label the rows)",
    )
    args = ap.parse_args(argv)
    this_run = Run.start("serve_load", argv, args)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    counts = [int(c) for c in args.connections.split(",") if c.strip()]
    with open(args.judgments, newline="") as fh:
        queries = sorted({row["query"] for row in csv.DictReader(fh)})
    extra = ["--workers", str(args.workers)]
    if args.reranker:
        extra += ["--reranker", str(args.reranker), "--reranker-runtime", args.reranker_runtime]
    label = args.label + (f" ×{args.workers} workers" if args.workers > 1 else "")
    label += " (opensearch)" if args.backend == "opensearch" else ""
    if set(names) & set(NODE) and args.backend != "opensearch":
        ap.error(f"{', '.join(NODE)} need --backend opensearch")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from plugin_api.settings import Settings

        shutil.copytree(Settings().embedded_dir, work / "data" / "index")
        env = {"SHOPRANK_API_KEYS": json.dumps([KEY])}
        if args.backend == "opensearch":
            env |= {
                "SHOPRANK_BACKEND": "opensearch",
                "SHOPRANK_UBI_PREFIX": f"bench-serve-{uuid.uuid4().hex[:8]}",
            }
        if args.no_result_cache:
            env["SHOPRANK_RESULT_CACHE_SIZE"] = "0"
        proc = serve(port, work / "serve.log", work / "data", extra, env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_workers(base, args.workers)
            first = f"/v1/search?q={urllib.parse.quote(queries[0])}"
            t = time.perf_counter()
            httpx.get(base + first, timeout=60).raise_for_status()
            ms = round((time.perf_counter() - t) * 1000.0, 1)
            first_row = FIRST + (f" ×{args.workers} workers" if args.workers > 1 else "")
            first_row += " (opensearch)" if args.backend == "opensearch" else ""
            rows.append(
                {
                    "scenario": first_row,
                    "backend": args.backend,
                    "connections": 1,
                    "workers": args.workers,
                    "latency_ms": ms,
                    "path": first,
                }
            )
            print(f"{FIRST}: {ms} ms", flush=True)
            ids = sorted(
                {
                    h["id"]
                    for q in ("cable", "laptop", "printer", "toner", "mouse", "camera", "headset", "usb")
                    for h in httpx.get(f"{base}/v1/search?pipeline=hybrid&k=25&q={q}", timeout=60).json()[
                        "results"
                    ]
                }
            )
            random.Random(7).shuffle(ids)
            paths = _paths(queries, ids)
            paths[WRITING] = paths["search-full"]
            puts = write_puts_lua(
                work / "writer.lua", _updates(work / "data" / "index", 500), KEY, args.write_rate
            )
            node_posts = _node_posts(queries) if set(names) & set(NODE) else {}
            for name in names:
                if name in NODE:
                    lua = write_posts_lua(work / f"{name}.lua", node_posts[name])
                    paths[name] = [p for p, _ in node_posts[name]]
                else:
                    lua = write_paths_lua(work / f"{name}.lua", paths[name])
                for n in counts:
                    extra_fields: dict[str, Any] = {}
                    if name in NODE:
                        wrk_row(node_posts["url"], lua, n, 3.0)  # warm-up
                        w = wrk_row(node_posts["url"], lua, n, args.seconds)
                    elif name == WRITING:
                        w, writer = _while_writing(base, lua, puts, n, args.seconds)
                        extra_fields = {"writes": writer, "write_rate_target": args.write_rate}
                    else:
                        wrk_row(base, lua, n, 3.0)  # warm-up
                        w = wrk_row(base, lua, n, args.seconds)
                    row = {
                        "scenario": name + label,
                        "connections": n,
                        "workers": args.workers,
                        "backend": args.backend,
                        "paths": len(paths[name]),
                        "result_cache": not args.no_result_cache,
                        **w,
                        **extra_fields,
                    }
                    rows.append(row)
                    print(f"{row['scenario']} ×{n}: {w['rps']} req/s, p95 {w['p95_ms']} ms", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    write_results(
        args.out, "serve_load", rows, key=("scenario", "connections"), run=this_run, markdown=_markdown
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
