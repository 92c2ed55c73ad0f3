"""Serving under load: ``shoprank serve`` on loopback, a bounded load generator beside it.

Starts the service as a real process (embedded index from ``scripts/run``; ``--reranker`` adds
the cross-encoder), waits for ``/readyz``, then for each scenario runs ``--clients`` concurrent
clients (each sends its next request when the previous answer arrived) for ``--seconds``:

* ``search-hybrid``: ``GET /v1/search?pipeline=hybrid`` with the 100 dev queries in turn;
* ``search-full``: ``GET /v1/search`` (fusion with shop signals, MMR diversity 0.2);
* ``similar``: ``GET /v1/recommend/similar/{id}`` for products sampled from the index.

Reports throughput, p50/p95/p99 latency and the error count (non-200 answers and transport
errors) per scenario. The load generator runs on the same machine as the service, so both share
its cores. Merges one row per scenario (with its run's provenance; scenarios not run keep theirs)
into ``OUT/serve_load.json`` and renders ``OUT/serve_load.md`` from it.
"""

from __future__ import annotations

import csv
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import Run, RunNotes, Table, add_judgments, add_out, parser, write_results
from bench.report import table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _queries(judgments: Path) -> list[str]:
    with open(judgments, newline="") as fh:
        return sorted({row["query"] for row in csv.DictReader(fh)})


def _load(base: str, make_path: Any, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=30.0) as client:
            while time.monotonic() < stop:
                path = make_path(rng)
                t = time.perf_counter()
                try:
                    r = client.get(path)
                    ok, why = r.status_code == 200, f"{r.status_code} {path}"
                except httpx.HTTPError as exc:
                    ok, why = False, f"{type(exc).__name__} {path}"
                dt = (time.perf_counter() - t) * 1000.0
                with lock:
                    latencies.append(dt)
                    if not ok:
                        errors.append(why)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:5],
        "throughput_rps": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "seconds": wall,
    }


def render(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    rows = [
        [
            n,
            r.get("clients", "–"),
            r["requests"],
            r["errors"],
            r["throughput_rps"],
            r["p50_ms"],
            r["p95_ms"],
            r["p99_ms"],
            notes.mark(r),
        ]
        for n, r in doc["scenarios"].items()
    ]
    lines = [
        "# Serving under load (loopback; the load generator shares the machine)",
        "",
        "- closed-loop clients, each scenario after a 5 s warm-up; the run's seconds per scenario, products"
        " and events in the event model are in the row (JSON)",
        "",
        *table(
            ["scenario", "clients", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "run"],
            rows,
            1,
        ),
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser("serve_load", __doc__)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--scenarios", default="search-hybrid,search-full,similar")
    ap.add_argument("--reranker", type=Path, help="serve with this cross-encoder (full pipeline)")
    ap.add_argument("--reranker-runtime", default="onnx-int8")
    ap.add_argument("--label", default="", help="appended to the scenario names in the report")
    add_judgments(ap)
    add_out(ap, "serve_load")
    args = ap.parse_args(argv)
    run = Run.start("serve_load", argv, args)
    port = _free_port()
    cmd = [sys.executable, "-m", "plugin_api.cli.main", "serve", "--port", str(port)]
    if args.reranker:
        cmd += ["--reranker", str(args.reranker), "--reranker-runtime", args.reranker_runtime]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = tempfile.NamedTemporaryFile("w", prefix="shoprank-serve-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(
                    f"shoprank serve exited with {proc.returncode} (log: {log.name}); run `scripts/run` first"
                )
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        ready = httpx.get(f"{base}/readyz").json()
        queries = _queries(args.judgments)
        ids = [
            r["id"] for r in httpx.get(f"{base}/v1/search", params={"q": "usb", "k": 100}).json()["results"]
        ]
        ids += [
            r["id"]
            for r in httpx.get(f"{base}/v1/search", params={"q": "laptop", "k": 100}).json()["results"]
        ]
        makers = {
            "search-hybrid": lambda rng: f"/v1/search?pipeline=hybrid&k=10&q={rng.choice(queries)}",
            "search-full": lambda rng: f"/v1/search?k=10&diversity=0.2&q={rng.choice(queries)}",
            "similar": lambda rng: f"/v1/recommend/similar/{rng.choice(ids)}?k=10",
        }
        for name in args.scenarios.split(","):
            _load(base, makers[name], args.clients, min(5.0, args.seconds))  # warm-up, not reported
            results[name + args.label] = _load(base, makers[name], args.clients, args.seconds)
            print(
                name + args.label,
                json.dumps({k: v for k, v in results[name + args.label].items() if k != "first_errors"}),
            )
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    per_run = {
        "clients": args.clients,
        "seconds_per_scenario": args.seconds,
        "products": ready.get("products"),
        "events": ready.get("events"),
        "reranker": str(args.reranker) if args.reranker else None,
    }
    doc = write_results(
        args.out,
        "serve_load",
        [
            Table(
                [{"scenario": n, **r, **per_run} for n, r in results.items()],
                ("scenario",),
                "scenarios",
                True,
            )
        ],
        run=run,
        extra={"date": run.date, "machine": run.machine, "seconds": args.seconds}
        | {k: v for k, v in per_run.items() if k != "seconds_per_scenario"},
        markdown=render,
    )
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
