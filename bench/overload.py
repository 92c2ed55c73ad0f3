"""Admission control under overload: ``shoprank serve`` on loopback, ``wrk`` against it.

Builds (or reuses, ``--data-dir``) an embedded index of the Chorus catalog with the hashing
embedder (no model, so the service's own overhead and its admission control dominate) plus the
synthetic UBI log as the shop's history, then for each ``--variants`` entry starts
``shoprank serve`` as a subprocess on a free 127.0.0.1 port over a fresh copy of that data with
these admission settings passed as ``SHOPRANK_*`` environment:

* ``default``: the settings' defaults, or the ``--max-inflight/--max-queued/--queue-wait/
  --read-timeout`` flags when given;
* ``legacy``: HEAD's admission before issue 12 (32 requests in flight, no wait queue, an
  immediate 429). The body and request-head deadlines stay on: they cannot be switched off.

Scenarios (``--scenarios``), each for ``--seconds``:

* ``hybrid`` / ``full``: Debian's ``wrk -t2 -cN -dS --latency`` at every ``--connections`` N
  with a Lua script that cycles through the 100 dev queries of ``judgments_dev.csv`` as
  ``GET /v1/search?pipeline=hybrid|full&q=...`` (``full`` without a reranker). The Lua
  ``response`` hook counts statuses (2xx / 429 / 5xx / other).
* ``slowloris``: ``--stalled`` sockets each send the head of a ``POST /v1/events`` with
  ``Content-Length: 1000`` and one body byte and then nothing; while they are open, ``wrk -c8``
  runs ``hybrid`` searches; then it waits (at most the read timeout + 2 s after they opened) for
  the server to end them. Reports the searches that succeeded and how the stalled sockets ended
  (408, closed without an answer, still open). ``--reopen`` replaces each one the server ends.

Per scenario: requests/s, 2xx/s, the share of 429 and of other non-2xx answers, wrk's latency
p50/p90/p99 over all answers, wrk's timeouts and socket errors, and the latency of the admitted
``/v1/search`` requests as the service itself measured them: the ``shoprank_request_seconds``
histogram scraped from ``/metrics`` before and after the scenario, p50/p99 linearly interpolated
inside the buckets of the difference (requests the admission guard refuses are counted under
their endpoint but not timed, so this histogram holds the admitted ones, queue wait included).
wrk, the stalled sockets and the service share this machine's cores.

Merges one row per variant, scenario and connection count (with its run's provenance; rows not
run keep theirs) into ``OUT/overload.json`` and renders ``OUT/overload.md`` from it. Run as
``python -m bench.overload``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import CHORUS, RESULTS, Run, RunNotes, parser, rows_of, write_results
from bench.live.overload_load import WRK, Stalled, admitted_latency, run_wrk, write_lua
from bench.live.overload_server import Server, dev_queries, prepare_data
from bench.report import table

ADMISSION = {
    "max_inflight": "max_inflight",
    "max_queued": "max_queued",
    "queue_wait": "queue_wait_s",
    "read_timeout": "read_timeout_s",
}
LEGACY = {"max_inflight": 32, "max_queued": 0, "queue_wait_s": 0.0}


@dataclass(frozen=True)
class _Plan:
    """What every variant runs: the scenarios, the wrk scripts, the environment."""

    args: argparse.Namespace
    work: Path
    env: dict[str, str]
    lua: dict[str, Path]
    scenarios: list[str]
    conns: list[int]


def _variants(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from plugin_api.settings import Settings

    defaults = {f: Settings.model_fields[f].default for f in ADMISSION.values()}
    flags = {f: getattr(args, a) for a, f in ADMISSION.items() if getattr(args, a) is not None}
    known = {"default": {**defaults, **flags}, "legacy": {**defaults, **LEGACY}}
    out = {}
    for name in args.variants.split(","):
        if name not in known:
            raise SystemExit(f"unknown variant {name!r}: choose from {', '.join(known)}")
        out[name] = known[name]
    return out


def _scenario(
    server: Server,
    scenario: str,
    c: int,
    lua: dict[str, Path],
    read_timeout_s: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One scenario's measurements: wrk's, the service's (``/metrics`` difference), the stalled sockets'."""
    stalled = None
    if scenario == "slowloris":
        stalled = Stalled(server.port, args.stalled, args.stalled_length, args.reopen)
    pipeline = "hybrid" if stalled else scenario
    m0 = server.metrics()
    try:
        t_open = time.monotonic()
        if stalled is not None:
            stalled.start()
            time.sleep(0.5)
        w = run_wrk(server.base, lua[pipeline], c, args.seconds, args.threads, args.timeout)
        if stalled is not None:  # let the server's read deadline end the rest, however short the run
            stalled.wait_ended(t_open + read_timeout_s + 2.0)
    finally:
        slow = stalled.close() if stalled is not None else None
    time.sleep(args.settle)  # requests still in flight when wrk stopped
    out = {"pipeline": pipeline, **w, **admitted_latency(m0, server.metrics(), w["seconds"])}
    return {**out, "slowloris": slow} if slow else out


def _env(work: Path) -> dict[str, str]:
    """This shell's environment for the servers, less any admission setting (the variant sets those)."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "SHOPRANK_CACHE_DIR": str(work / "cache"),
        "SHOPRANK_BACKEND": "embedded",
    }
    for k in list(env):  # admission comes from the variant alone, not from this shell
        if k.startswith("SHOPRANK_") and k[len("SHOPRANK_") :].lower() in ADMISSION.values():
            del env[k]
    return env


def _scenarios(args: argparse.Namespace) -> list[str]:
    scenarios = args.scenarios.split(",")
    unknown = set(scenarios) - {"hybrid", "full", "slowloris"}
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}: choose from hybrid, full, slowloris")
    return list(scenarios)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="shoprank-overload-"))
    env = _env(work)
    load0 = os.getloadavg()[0]
    queries = dev_queries(args.catalog)
    scenarios = _scenarios(args)
    conns = [int(c) for c in args.connections.split(",")]
    variants = _variants(args)
    rows: list[dict[str, Any]] = []
    ready: dict[str, Any] = {}
    try:
        base = args.data_dir or work / "base"
        prep_s = prepare_data(base, args.catalog, args.events, env)
        lua = {p: write_lua(work / f"{p}.lua", queries, p) for p in ("hybrid", "full")}
        plan = _Plan(args, work, env, lua, scenarios, conns)
        for name, admission in variants.items():
            rows += _run_variant(plan, name, admission, base, ready)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "loadavg_1min_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "parameters": {
            "catalog": str(args.catalog),
            "embedder": "hashing",
            "events": args.events,
            "queries": len(queries),
            "seconds": args.seconds,
            "threads": args.threads,
            "wrk_timeout": args.timeout,
            "stalled": args.stalled,
            "stalled_content_length": args.stalled_length,
            "reopen": args.reopen,
        },
        "prepare_seconds": prep_s,
        "readyz": ready,
        "rows": rows,
    }


def _run_variant(
    plan: _Plan, name: str, admission: dict[str, Any], base: Path, ready: dict[str, Any]
) -> list[dict[str, Any]]:
    """One variant: a server over a fresh copy of ``base``, warmed up, then every scenario at each
    of its connection counts; its /readyz answer goes into ``ready``."""
    args = plan.args
    data = plan.work / f"data-{name}"
    shutil.copytree(base, data)  # each variant starts from the same data
    server = Server(data, admission, plan.env, plan.work / f"serve-{name}.log")
    rows: list[dict[str, Any]] = []
    try:
        ready[name] = server.wait_ready()
        print(f"[{name}] ready on {server.base}: {admission}", file=sys.stderr)
        if args.warmup > 0:
            run_wrk(server.base, plan.lua["hybrid"], 8, args.warmup, args.threads, args.timeout)
            time.sleep(args.settle)
        for scenario in plan.scenarios:
            for c in [args.slowloris_connections] if scenario == "slowloris" else plan.conns:
                m = _scenario(server, scenario, c, plan.lua, admission["read_timeout_s"], args)
                print(f"[{name}] {scenario} c={c}: {json.dumps(m)}", file=sys.stderr)
                params = {**admission, "seconds": args.seconds, "pipeline": m.pop("pipeline")}
                rows.append(
                    {
                        "variant": name,
                        "scenario": scenario,
                        "connections": c,
                        "parameters": {**params, "wrk_timeout": args.timeout},
                        **m,
                    }
                )
    finally:
        server.stop()
    shutil.rmtree(data, ignore_errors=True)
    return rows


def _fmt_s(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def markdown(r: dict[str, Any]) -> str:
    p = r["parameters"]
    load = rows_of(r)
    notes = RunNotes()
    lines = [
        "# Admission control under overload",
        "",
        f"Latest run: {r['date']} · `{r['command']}` · commit {r['commit']} · {r['machine']} · "
        f"load average {r['loadavg_1min_start_end'][0]} → {r['loadavg_1min_start_end'][1]} · "
        f"{p['queries']} dev queries, hashing embedder, {p['seconds']:g} s per scenario. "
        "run: the footnote of the run behind the row, below.",
        "",
        *_load_table(load, notes),
    ]
    slow = [x for x in load if "slowloris" in x]
    if slow:
        lines += _slowloris_section(slow, p)
    lines += [
        "wrk's latencies cover every answer (429s included), from its own clock; `timeouts` are "
        f"requests over wrk's --timeout {p['wrk_timeout']}. `admitted` is the service's own "
        '`shoprank_request_seconds{endpoint="/v1/search"}` histogram (difference of two /metrics '
        "scrapes; queue wait included; refused requests are counted, not timed), p50/p99 "
        "linearly interpolated inside its buckets (0.005 … 10 s, with 0.75 and 1.5 s), so ≈ only. `legacy` is HEAD's "
        "admission before issue 12 (32 in flight, no queue, immediate 429) with today's read deadlines.",
        "",
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def _shown_run(row: dict[str, Any]) -> dict[str, Any]:
    """The row's run less its parameters (each row records its own admission settings there), so
    rows of one invocation share a footnote."""
    return {"run": {k: v for k, v in (row.get("run") or {}).items() if k != "parameters"}}


def _load_table(load: list[dict[str, Any]], notes: RunNotes) -> list[str]:
    """A row per variant, scenario and connection count: wrk's figures and the service's."""
    return table(
        [
            "variant",
            "in flight / queued / wait s",
            "scenario",
            "conns",
            "req/s",
            "2xx/s",
            "429 %",
            "other non-2xx %",
            "wrk p50 / p90 / p99 ms",
            "timeouts",
            "socket errors c/r/w",
            "admitted/s",
            "admitted p50 / p99 ms ≈",
            "run",
        ],
        [
            [
                x["variant"],
                f"{x['parameters']['max_inflight']} / {x['parameters']['max_queued']} / "
                f"{x['parameters']['queue_wait_s']:g}",
                x["scenario"],
                x["connections"],
                x["rps"],
                x["ok_rps"],
                x["pct_429"],
                x["pct_other_non2xx"],
                f"{x['p50_ms']:.0f} / {x['p90_ms']:.0f} / {x['p99_ms']:.0f}",
                x["timeouts"],
                "/".join(str(v) for v in x["socket_errors"].values()),
                x["admitted_rps"],
                " / ".join(
                    "–" if v is None else f"{v:.0f}" for v in (x["admitted_p50_ms"], x["admitted_p99_ms"])
                ),
                notes.mark(_shown_run(x)),
            ]
            for x in load
        ],
        digits=1,
    )


def _slowloris_section(slow: list[dict[str, Any]], p: dict[str, Any]) -> list[str]:
    """How the stalled sockets ended, per variant, and the searches beside them."""
    return [
        f"Slowloris: {p['stalled']} sockets send the head of `POST /v1/events` with Content-Length "
        f"{p['stalled_content_length']} and one body byte, then nothing"
        + (" (each one that ends is reopened at once)" if p["reopen"] else "")
        + "; wrk runs hybrid searches meanwhile (row above).",
        "",
        *table(
            [
                "variant",
                "read timeout s",
                "searches 2xx",
                "2xx/s",
                "opened",
                "ended how",
                "ended after s (p50 / max)",
                "still open",
            ],
            [
                [
                    x["variant"],
                    x["parameters"]["read_timeout_s"],
                    x["statuses"]["2xx"],
                    x["ok_rps"],
                    x["slowloris"]["opened"],
                    ", ".join(f"{k}: {v}" for k, v in x["slowloris"]["ended"].items()) or "–",
                    " / ".join(_fmt_s(x["slowloris"][k]) for k in ("ended_after_s_p50", "ended_after_s_max")),
                    x["slowloris"]["still_open"],
                ]
                for x in slow
            ],
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = parser("overload", __doc__)
    ap.add_argument(
        "--catalog", type=Path, default=CHORUS, help="Chorus folder (catalog + judgments_dev.csv)"
    )
    ap.add_argument(
        "--data-dir", type=Path, help="reuse (or build into) this prepared data dir; copied per variant"
    )
    ap.add_argument(
        "--events", action=argparse.BooleanOptionalAction, default=True, help="ingest the synthetic UBI log"
    )
    ap.add_argument(
        "--variants", default="default,legacy", help="default (settings, or the flags below), legacy"
    )
    ap.add_argument("--max-inflight", type=int, help="SHOPRANK_MAX_INFLIGHT for the default variant")
    ap.add_argument("--max-queued", type=int, help="SHOPRANK_MAX_QUEUED for the default variant")
    ap.add_argument("--queue-wait", type=float, help="SHOPRANK_QUEUE_WAIT_S for the default variant")
    ap.add_argument("--read-timeout", type=float, help="SHOPRANK_READ_TIMEOUT_S for the default variant")
    ap.add_argument("--scenarios", default="hybrid,full,slowloris")
    ap.add_argument("--connections", default="8,64", help="wrk connections for hybrid and full")
    ap.add_argument("--seconds", type=float, default=20.0, help="per scenario")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--timeout", default="2s", help="wrk --timeout (its default)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of unreported hybrid load per variant")
    ap.add_argument(
        "--settle", type=float, default=2.0, help="seconds between wrk's end and the /metrics scrape"
    )
    ap.add_argument("--stalled", type=int, default=200, help="slowloris sockets")
    ap.add_argument("--stalled-length", type=int, default=1000, help="the Content-Length they promise")
    ap.add_argument("--reopen", action="store_true", help="reopen each stalled socket the server ends")
    ap.add_argument("--slowloris-connections", type=int, default=8, help="wrk connections beside them")
    ap.add_argument("--out", type=Path, default=RESULTS / "overload")
    args = ap.parse_args(argv)
    if not Path(WRK).exists():
        raise SystemExit(f"{WRK} not found: apt-get install wrk")
    this_run = Run.start("overload", argv, args)
    r = run(args)
    doc = write_results(
        args.out,
        "overload",
        r.pop("rows"),
        key=["variant", "scenario", "connections"],
        run=this_run,
        extra=this_run.file_fields() | r,
        markdown=markdown,
    )
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
