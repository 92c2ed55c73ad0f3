"""Hostile input, replayed: every failure of issue 12 as raw HTTP against a live ``shoprank serve``.

One ``shoprank serve`` process (embedded backend, hashing embedder, an index of ``--catalog`` in a
temporary data dir, ``SHOPRANK_API_KEYS='["k"]'``, a free loopback port) gets, case by case:

1. a product batch with the same new id twice, a DELETE of that id, then searches and similar
   items whose every hit must carry its own record (id and title checked against what was written);
2. events dated 2126 or with a NaN/Infinity time (as strings and as raw JSON literals), then a
   restart (SIGTERM, start) over records planted in the events log as an older version stored them,
   and ``shoprank events expire``;
3. 2,000 fabricated click/purchase events from 2,000 fake shopper ids on one product, no key:
   trending (``/v1/recommend/user/<new id>``) and the product's search rank before and after;
4. a 20 MB chunked ``POST /v1/events`` without a key (raw socket, no Content-Length): the answer
   and whether the events log grew;
5. 40 connections that send a head and one byte of body and stall, while 20 searches run;
6. ``position.ordinal`` 1e400, ``event_attributes`` nested 500 deep, search ``weights`` NaN, ``"k": true``;
7. product ids with ``/``, a space, NUL, and 10 kB (PUT/DELETE tried on any accepted);
8. a product written through the API, then ``shoprank index`` run by another process while the
   server runs: is it still served within 3 s, and does the server switch to the new version;
9. OpenSearch only: with ``--opensearch`` and a node at 127.0.0.1:9200, searches through it (the
   outage itself is the cluster test's, ``tests/integration/test_cluster.py``); skipped otherwise;
10. the OpenAPI document against the service: error schema, status codes, /metrics media type.

Each row states the expected answer and passes or fails; the run exits 0 either way and prints the
count. Only 127.0.0.1 is contacted; every process and socket is closed at the end. Merges one row
per check (keyed on case and request, with its run's provenance) into ``OUT/hostile_inputs.json``
and renders ``.md`` from it; run as ``python -m bench.hostile_inputs``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, Run, RunNotes, parser, rows_of, write_results
from bench.live.hostile_cases import case_batch, case_flood, case_ids, case_numbers, case_time
from bench.live.hostile_client import KEY, Bench
from bench.live.hostile_service import case_openapi, case_opensearch, case_rebuild
from bench.live.hostile_sockets import chunked_flood, slowloris
from bench.live.server import FIXTURE, Server, Shoprank, server_exceptions
from bench.report import table


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="shoprank-hostile-"))
    sr = Shoprank(work, work / "data")
    sr.env["SHOPRANK_API_KEYS"] = json.dumps([KEY])
    srv = Server(sr, "hostile")
    b = Bench(srv)
    t0 = time.monotonic()
    from plugin_api.settings import Settings

    read_timeout = float(Settings.model_fields["read_timeout_s"].default)  # what the server runs with
    try:
        sr.index(args.catalog, work / "index.log")
        b.known = {
            str(r["id"]): str(r["title"]) for r in map(json.loads, args.catalog.read_text().splitlines())
        }
        srv.start()
        _cases(b, args, read_timeout, work)
    finally:
        srv.kill()
        exceptions = server_exceptions(work, "serve-hostile-*.log")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    rows = sorted(b.rows, key=lambda r: r["case"])
    return {
        "parameters": _parameters(args),
        "seconds": round(time.monotonic() - t0, 1),
        "read_timeout_s": read_timeout,
        "server_exceptions": exceptions,
        "rows": rows,
        "work_dir": str(work) if args.keep else None,
    }


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    """What the latest run exercised (each row's ``run`` holds its own run's arguments)."""
    return {
        "catalog": str(args.catalog),
        "backend": "embedded",
        "embedder": "hashing",
        "fake_events": args.fake,
        "chunked_mb": args.chunked_mb,
        "stalled": args.stalled,
        "searches": args.searches,
        "opensearch": args.opensearch,
    }


def _counts(merged: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Passed and failed over every row of the merged file, not only this run's."""
    rows = merged["rows"]
    return {"passed": sum(r["pass"] for r in rows), "failed": sum(not r["pass"] for r in rows)}


def _cases(b: Bench, args: argparse.Namespace, read_timeout: float, work: Path) -> None:
    """The cases in turn (those after case 2 only while the server is up), then the error shapes."""
    case_batch(b)
    case_time(b)
    if b.srv.proc is not None and b.srv.proc.poll() is None:
        case_flood(b, args.fake)
        chunked_flood(b, args.chunked_mb)
        slowloris(b, args.stalled, args.searches, read_timeout)
        case_numbers(b)
        case_ids(b)
        case_rebuild(b)
        case_openapi(b)
        b.row(
            10,
            f"every error answer of this run ({b.error_answers}) in the {{error, detail}} shape",
            "all",
            f"{len(b.bad_shapes)} not",
            None,
            "; ".join(b.bad_shapes[:4]) or "none",
            not b.bad_shapes,
        )
    case_opensearch(b, args, work)


def markdown(r: dict[str, Any]) -> str:
    exc = "; ".join(f"{n} × `{e}`" for e, n in r["server_exceptions"].items()) or "none"
    notes = RunNotes()
    lines = [
        "# Hostile inputs: issue 12's failures replayed against `shoprank serve`",
        "",
        f"Embedded backend, hashing embedder · latest run {r['seconds']} s · "
        f"**{r['passed']} passed, {r['failed']} failed** over all rows · run: the footnote of the run "
        "that wrote the row",
        "",
        *table(
            ["case", "request", "expected", "answered", "ms", "check afterwards", "pass", "run"],
            [
                [
                    x["case"],
                    x["request"],
                    x["expected"],
                    x["status"],
                    x["ms"],
                    x["check"],
                    "pass" if x["pass"] else "**FAIL**",
                    notes.mark(x),
                ]
                for x in rows_of(r)
            ],
            digits=1,
        ),
        f"Exceptions in the latest run's server logs (a traceback's last line): {exc}.",
        "",
        "ms: time to the answer (case 5: the slowest search / the last stalled answer; case 8: from the "
        "end of the build until served). A 5xx always fails its row.",
        "",
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser("hostile_inputs", __doc__)
    ap.add_argument("--catalog", type=Path, default=FIXTURE)
    ap.add_argument("--fake", type=int, default=2000, help="fabricated events in case 3")
    ap.add_argument("--chunked-mb", type=int, default=20, help="size of the chunked body in case 4")
    ap.add_argument("--stalled", type=int, default=40, help="stalled uploads in case 5")
    ap.add_argument("--searches", type=int, default=20, help="searches during the stall in case 5")
    ap.add_argument("--opensearch", action="store_true", help="case 9 against a node at 127.0.0.1:9200")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir and logs")
    ap.add_argument("--out", type=Path, default=RESULTS / "hostile_inputs")
    args = ap.parse_args(argv)
    this_run = Run.start("hostile_inputs", argv, args)
    r = run(args)
    rows = r.pop("rows")
    doc = write_results(
        args.out,
        "hostile_inputs",
        rows,
        key=["case", "request"],
        run=this_run,
        extra=lambda merged: this_run.file_fields() | r | _counts(merged),
        markdown=markdown,
    )
    print(markdown(doc))
    passed = sum(x["pass"] for x in rows)
    print(f"hostile_inputs: this run {passed} passed, {len(rows) - passed} failed ({len(rows)} checks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
