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
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.live.crash_build import build_kills
from bench.live.crash_writes import KINDS, write_kills
from bench.live.server import FIXTURE, NODE, node_answers
from bench.provenance import REPO, git_commit
from bench.report import table
from ranker.evaluation.relevance import machine_description

NO_REVIEWS = "not exercised: no sentiment model (POST /v1/reviews needs one; pass --sentiment-model)"


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="shoprank-crash-"))
    t0 = time.monotonic()
    try:
        writes = [write_kills(args, work, "embedded", rng)]
        opensearch = "not requested (--backend opensearch)"
        if args.backend == "opensearch":
            opensearch = "run" if node_answers() else f"skipped: no node at {NODE}"
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
        lines += _writes_section(w)
    if r["build"]:
        lines += _build_section(r["build"])
    lines += [
        "acked = answered 200 with every item taken; lost = acked but not in the store after the restart "
        "(must be 0); unanswered = the connection broke with the request in flight (applied or not, both "
        "fine; “in part” = a batch of which only some items were stored); refused or unsent applied = "
        "non-200 or never-sent writes found in the store (must be 0). SIGKILL only: a power cut is not "
        "tested.",
    ]
    return "\n".join(lines) + "\n"


def _writes_section(w: dict[str, Any]) -> list[str]:
    """One backend's write rounds: a row per round, then the exceptions its servers logged."""
    lines = [f"### {w['backend']}: {w['catalog_products']} catalog products, first start "]
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
    return lines + [
        f"Exceptions in the server logs: {'; '.join(f'{n} × `{e}`' for e, n in exc.items()) or 'none'}",
        "",
    ]


def _build_section(b: dict[str, Any]) -> list[str]:
    """The killed builds, a row per kill, and the build left alone."""
    f = b["final"]
    return [
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
