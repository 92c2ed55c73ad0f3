"""How closely the strict keyword leg reproduces the pool the dev judgments were drawn from.

The Chorus dev judgments rate, per query, the products one keyword engine returned (up to 40 of
them). For each query this compares the judged products with the strict leg's matches (every
query term in some text field) and with its top 40 (per-term best-field BM25): how many judged
products the leg matches at all, for how many queries with fewer than 40 judged products the
judged set *is* the match set, and how much of a 40-product pool the leg's top 40 recovers.
Writes ``OUT/judgment_pool.json`` and ``OUT/judgment_pool.md``.
"""

from __future__ import annotations

from typing import Any

from bench.common import Run, RunNotes, add_index, add_judgments, add_out, parser, write_results
from bench.report import table
from indexer.embedded.store import EmbeddedStore
from ranker.base import Filters
from ranker.evaluation.relevance import load_judgments
from ranker.retrieval.embedded import EmbeddedBackend

POOL = 40  # the judgments' deepest regular pool


def render(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    rows = [[r["measure"], r["value"], notes.mark(r)] for r in doc["rows"]]
    lines = [
        "# The judgment pool and the strict keyword leg",
        "",
        *table(["measure", "value", "run"], rows, 4),
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser("judgment_pool", __doc__)
    add_index(ap)
    add_judgments(ap)
    add_out(ap, "judgment_pool")
    args = ap.parse_args(argv)
    run = Run.start("judgment_pool", argv, args)
    qrels = load_judgments(args.judgments)
    backend = EmbeddedBackend(EmbeddedStore(args.index))
    n_all = backend.count()
    judged = matched = 0
    small = small_exact = 0
    full_overlap: list[float] = []
    for q, rated in sorted(qrels.items()):
        hits = backend.strict_lexical(q, n_all, Filters())
        match = {s.id for s in hits}
        judged += len(rated)
        matched += len(set(rated) & match)
        if len(rated) < POOL:
            small += 1
            small_exact += match == set(rated)
        elif len(rated) == POOL and len(match) > POOL:
            top = {s.id for s in hits[:POOL]}
            full_overlap.append(len(top & set(rated)) / POOL)
    measures = {
        "products": n_all,
        "queries": len(qrels),
        "judged_pairs": judged,
        "judged_in_strict_match": round(matched / judged, 4),
        "queries_under_40_judged": small,
        "of_which_judged_set_equals_strict_match_set": small_exact,
        "queries_40_judged_with_more_than_40_matches": len(full_overlap),
        "mean_share_of_their_40_judged_in_strict_top_40": round(sum(full_overlap) / len(full_overlap), 4)
        if full_overlap
        else None,
    }
    doc = write_results(
        args.out,
        "judgment_pool",
        [{"measure": k, "value": v} for k, v in measures.items()],
        key=["measure"],
        run=run,
        # the older flat layout (one field per measure), kept for readers of it
        extra=lambda tables: (
            {"date": run.date, "machine": run.machine} | {r["measure"]: r["value"] for r in tables["rows"]}
        ),
        markdown=render,
    )
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
