"""Search-as-you-type under load: ``wrk`` against ``/v1/suggest`` and ``/v1/search`` on loopback.

Starts ``shoprank serve`` on a copy of the configured embedded index (the one ``scripts/run``
builds, MiniLM), waits for ``/readyz``, then runs Debian's ``wrk`` with a
generated Lua script per scenario, cycling through every keystroke of the dev queries (``l``,
``la``, ``lap`` … — the requests a search box sends while a shopper types; the judgments'
ratings are not read):

* ``suggest``: ``GET /v1/suggest?q=<keystroke>``;
* ``search-full`` / ``search-full-exact``: ``GET /v1/search?q=<query>`` over the clean dev queries,
  with query understanding (the default) and with ``exact=true`` (the text as typed: what the
  understanding step costs);
* ``search-full-typing``: ``GET /v1/search`` over the keystrokes (the query is being completed).

Reports requests/s and wrk's latency p50/p90/p95/p99 per scenario (wrk and the service share the
two cores). Merges one row per scenario into ``OUT/typing_load.json`` and renders
``OUT/typing_load.md``.
"""

from __future__ import annotations

import csv
import shutil
import socket
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from bench.common import Run, RunNotes, add_judgments, add_out, parser, rows_of, write_results
from bench.live.overload_load import write_paths_lua
from bench.live.wrk_serve import serve, wrk_row


def _keystrokes(queries: list[str]) -> list[str]:
    return [q[:n] for q in queries for n in range(1, len(q) + 1) if q[:n].strip()]


def _markdown(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    lines = [
        "# Search-as-you-type under load",
        "",
        "`wrk` on loopback against `shoprank serve` (embedded index, MiniLM), cycling through every "
        "keystroke of the dev queries (`bench/typing_load.py`); wrk and the service share the cores.",
        "",
        "| scenario | connections | req/s | p50 ms | p90 ms | p95 ms | p99 ms | non-200 | run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows_of(doc):
        lines.append(
            f"| {r['scenario']} | {r['connections']} | {r['rps']} | {r['p50_ms']} | {r['p90_ms']} "
            f"| {r['p95_ms']} | {r['p99_ms']} | {r['non_200']} | {notes.mark(r)} |"
        )
    return "\n".join([*lines, "", *notes.lines(), ""])


def main(argv: list[str] | None = None) -> int:
    ap = parser("typing_load", __doc__)
    add_judgments(ap)
    add_out(ap, "typing_load")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--scenarios", default="suggest,search-full,search-full-exact,search-full-typing")
    args = ap.parse_args(argv)
    this_run = Run.start("typing_load", argv, args)
    with open(args.judgments, newline="") as fh:
        queries = sorted({row["query"] for row in csv.DictReader(fh)})
    typed = _keystrokes(queries)
    quote = urllib.parse.quote
    paths = {
        "suggest": [f"/v1/suggest?q={quote(q)}" for q in typed],
        "search-full": [f"/v1/search?q={quote(q)}" for q in queries],
        "search-full-exact": [f"/v1/search?exact=true&q={quote(q)}" for q in queries],
        "search-full-typing": [f"/v1/search?q={quote(q)}" for q in typed],
    }
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [n for n in names if n not in paths]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {', '.join(paths)}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from plugin_api.settings import Settings

        shutil.copytree(Settings().embedded_dir, work / "data" / "index")
        proc = serve(port, work / "serve.log", work / "data")
        base = f"http://127.0.0.1:{port}"
        try:
            for name in names:
                lua = write_paths_lua(work / f"{name}.lua", paths[name])
                wrk_row(base, lua, args.connections, 3.0)  # warm-up
                w = wrk_row(base, lua, args.connections, args.seconds)
                rows.append(
                    {"scenario": name, "connections": args.connections, "paths": len(paths[name]), **w}
                )
                print(f"{name}: {w['rps']} req/s, p95 {w['p95_ms']} ms", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    write_results(
        args.out, "typing_load", rows, key=("scenario", "connections"), run=this_run, markdown=_markdown
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
