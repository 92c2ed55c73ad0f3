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
answers; it never starts or stops a node. Merges the ``writes`` (one per backend) and the killed
builds (one per trigger), each with its run's provenance, into ``OUT/crash_durability.json`` and
renders ``.md`` from it; rows this run did not produce keep theirs.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS,
    Run,
    RunNotes,
    Table,
    merge_rows,
    parser,
    read_results,
    rows_of,
    write_results,
)
from bench.live.crash_build import build_kills
from bench.live.crash_writes import KINDS, write_kills
from bench.live.server import FIXTURE, NODE, node_answers
from bench.report import table

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
    notes = RunNotes()
    lines = [
        "# Durability under kill -9",
        "",
        f"Latest run: {r['date']} · `{r['command']}` · commit {r['commit']} · {r['machine']} · embedder "
        f"hashing · {p['rounds']} rounds × {p['threads']} writer threads · seed {p['seed']} · "
        f"{r['seconds']} s. [n]: the run behind a section or row, below.",
        "",
        "## Server killed during writes",
        "",
        f"Reviews: {r['reviews']}. OpenSearch: {r['opensearch']}. Per kind: acked / lost (lost over all "
        "rounds so far) / unanswered→applied; `refused or unsent applied` sums the kinds.",
        "",
    ]
    for w in rows_of(r, "writes", key="backend"):
        lines += _writes_section(w, notes)
    if r.get("build"):
        lines += _build_section(r["build"], notes)
    lines += [
        "acked = answered 200 with every item taken; lost = acked but not in the store after the restart "
        "(must be 0); unanswered = the connection broke with the request in flight (applied or not, both "
        "fine; “in part” = a batch of which only some items were stored); refused or unsent applied = "
        "non-200 or never-sent writes found in the store (must be 0). SIGKILL only: a power cut is not "
        "tested.",
        "",
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def _writes_section(w: dict[str, Any], notes: RunNotes) -> list[str]:
    """One backend's write rounds: a row per round, then the exceptions its servers logged."""
    lines = [f"### {w['backend']}: {w['catalog_products']} catalog products, first start "]
    lines[-1] += f"{w['first_start_s']} s to ready {notes.mark(w)}"
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


def _build_section(b: dict[str, Any], notes: RunNotes) -> list[str]:
    """The killed builds, a row per kill (with its run), and the build left alone."""
    f = b["final"]
    trials = [{k: v for k, v in t.items() if k != "run"} | {"run": notes.mark(t)} for t in b["trials"]]
    final_mark = f" {notes.mark(b)}" if "run" in b else ""
    return [
        "## Index build killed mid-way",
        "",
        f"Live version: {b['catalog']} ({b['catalog_products']} products) plus one product written "
        f"through the API; the killed builds index {b['build_catalog']}; `tmp files at kill` in bytes.",
        "",
        *_table(trials),
        f"Then a build left alone{final_mark}: {f['documents']} products in {f['seconds']} s; CURRENT switched: "
        f"{f['current_changed']}; leftover .tmp folders after it: {f['leftover_tmp_after']}; the running "
        f"server serves {f['live_server_products']} products (expected {f['expected_products']}, "
        f"{f['live_switch_s']} s after the build); API product carried: {f['api_product_carried']}; a "
        f"fresh server serves {f['fresh_server_products']} (ready in {f['fresh_start_s']} s). "
        f"Exceptions in the server logs: {_exc_text(b['server_exceptions'])}.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = parser("crash_durability", __doc__)
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
    ap.add_argument("--out", type=Path, default=RESULTS / "crash_durability")
    args = ap.parse_args(argv)
    this_run = Run.start("crash_durability", argv, args)
    r = run(args)
    writes, build = r.pop("writes"), r.pop("build")
    extra = this_run.file_fields() | r
    if build is not None:  # --skip-build keeps the stored build section as it is
        extra["build"] = _merged_build(args.out, build, this_run)
    doc = write_results(
        args.out,
        "crash_durability",
        [Table(writes, ("backend",), at="writes")],
        run=this_run,
        extra=extra,
        markdown=markdown,
    )
    print(markdown(doc))
    return 0


def _merged_build(out: Path, build: dict[str, Any], run: Run) -> dict[str, Any]:
    """This run's build section, its trials merged (on ``trigger``) into the stored ones."""
    stored = read_results(out, "crash_durability").get("build") or {}
    trials = merge_rows(stored.get("trials") or [], build["trials"], ("trigger",), run)
    return {**build, "trials": trials, "run": run.as_dict()}


if __name__ == "__main__":
    raise SystemExit(main())
