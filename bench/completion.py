"""Completion of the word being typed: how often the rewriter completes a cut-off last word back to
the word the shopper meant, per weight of the type-head prior.

Needs the embedded index (``shoprank index --catalog ../shared/data/chorus_icecat``). Two query
sets, each cut as :mod:`ranker.evaluation.typed_variants` cuts prefixes (34 / 50 / 67 % of the last
word): the dev judgments' queries, and, as a check on queries the prior was not chosen on, the
synthetic UBI log's one- and two-word queries that appear at least twice, name only catalog terms
and are no dev query. A prefix counts as completed when the rewrite analyzes to the clean query.
The judgments are read for their query texts only. Merges one row per (query set, prior weight)
into ``OUT/completion.json`` and renders ``OUT/completion.md``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    CHORUS,
    Run,
    RunNotes,
    add_index,
    add_judgments,
    add_out,
    parser,
    rows_of,
    write_results,
)

KEY = ("queries", "type_head_prior")


def log_queries(path: Path, exclude: set[str], known: Any, min_count: int = 2) -> list[str]:
    """Distinct lower-cased ``user_query`` texts of a UBI log (:func:`indexer.events.read_ubi_log`)
    of one or two words, seen ``min_count``+ times, whose terms ``known`` accepts, not in ``exclude``."""
    from indexer.analysis import analyze
    from indexer.events import read_ubi_log

    seen = Counter(r.user_query.lower().strip() for r in read_ubi_log(path).queries)
    return sorted(
        q
        for q, n in seen.items()
        if q
        and n >= min_count
        and q not in exclude
        and len(q.split()) <= 2
        and all(known(t) for t in analyze(q))
    )


def accuracy(rewriter: Any, queries: list[str]) -> dict[str, Any]:
    from indexer.analysis import analyze
    from ranker.evaluation.typed_variants import PREFIX_CUTS, prefix

    per_cut: dict[str, int] = {}
    misses: dict[str, int] = dict.fromkeys(MISS_BUCKETS, 0)
    done = total = 0
    for cut in PREFIX_CUTS:
        ok = 0
        for q in queries:
            typed = prefix(q, cut)
            if typed is None:
                continue
            total += 1
            hit = analyze(rewriter.rewrite(typed).query) == analyze(q)
            ok += hit
            if not hit:
                misses[_miss_bucket(rewriter, typed, q)] += 1
        per_cut[f"{cut:.2f}"] = ok
        done += ok
    return {
        "prefixes": total,
        "completed": done,
        "share": round(done / total, 4) if total else 0.0,
        "per_cut": per_cut,
        "misses": misses,
    }


# Where the intended word stands among the catalog's completions of a missed prefix: 1st (the
# typed word was kept as a word in its own right, or the query's other words differ), 2nd–4th,
# 5th–10th, lower, or no product names it with the other words (not in the catalog at all).
MISS_BUCKETS = ("1st", "2nd-4th", "5th-10th", "lower", "none")


def _miss_bucket(rewriter: Any, typed: str, clean: str) -> str:
    from indexer.analysis import analyze

    want = analyze(clean)[-1:]
    ranked = [i for i, c in enumerate(rewriter.completions(typed), start=1) if analyze(c) == want]
    if not ranked:
        return "none"
    r = ranked[0]
    return "1st" if r == 1 else "2nd-4th" if r <= 4 else "5th-10th" if r <= 10 else "lower"


def _markdown(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    lines = [
        "# Completing the word being typed",
        "",
        "`bench/completion.py`: share of cut-off last words (34 / 50 / 67 % of their letters) the "
        "rewriter completes back to the clean query, per weight of the type-head prior "
        "(`TYPE_HEAD_PRIOR`; the shipped value is marked). UBI: the synthetic log's frequent one- and "
        "two-word queries that are no dev query.",
        "",
        "| queries | type-head prior | prefixes | completed | share | 34 % · 50 % · 67 % | run |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows_of(doc):
        cuts = " · ".join(str(v) for v in r["per_cut"].values())
        mark = " (shipped)" if r.get("shipped") else ""
        lines.append(
            f"| {r['queries']} ({r['query_count']}) | {r['type_head_prior']:g}{mark} | {r['prefixes']} "
            f"| {r['completed']} | {r['share']:.4f} | {cuts} | {notes.mark(r)} |"
        )
    lines += [
        "",
        "Where the intended word stands among the catalog's completions of each missed prefix "
        "(`QueryRewriter.completions`, the shipped prior): a miss at 2nd–4th is a choice the "
        'catalog\'s counts got wrong; lower or none, a word its counts cannot reach ("none": no '
        "product names it with the query's other words). 1st: the typed word was kept as a word.",
        "",
        "| queries | misses | " + " | ".join(MISS_BUCKETS) + " | run |",
        "|---|---|" + "---|" * len(MISS_BUCKETS) + "---|",
    ]
    for r in rows_of(doc):
        if r.get("shipped") and "misses" in r:
            m = r["misses"]
            lines.append(
                f"| {r['queries']} ({r['query_count']}) | {r['prefixes'] - r['completed']} | "
                + " | ".join(str(m[b]) for b in MISS_BUCKETS)
                + f" | {notes.mark(r)} |"
            )
    return "\n".join([*lines, "", *notes.lines(), ""])


def main(argv: list[str] | None = None) -> int:
    ap = parser("completion", __doc__)
    add_index(ap)
    add_judgments(ap)
    add_out(ap, "completion")
    ap.add_argument("--log", type=Path, default=CHORUS / "ubi_events_synthetic.zip", help="UBI log zip")
    ap.add_argument("--priors", default="0,3,4,5,10", help="comma-separated TYPE_HEAD_PRIOR weights")
    args = ap.parse_args(argv)
    this_run = Run.start("completion", argv, args)

    import ranker.query.rewrite as rewrite
    from indexer.embedded.store import EmbeddedStore
    from ranker.evaluation.relevance import load_judgments
    from ranker.query.lexicon import Lexicon
    from ranker.query.types import TypeModel
    from ranker.retrieval.embedded import EmbeddedBackend

    docs = list(EmbeddedBackend(EmbeddedStore(args.index)).naming_documents())
    lexicon = Lexicon.from_documents(docs)
    types = TypeModel.fit(d[2] for d in docs)
    dev = sorted({q.lower() for q in load_judgments(args.judgments)})
    sets = {"dev": dev, "UBI": log_queries(args.log, set(dev), lexicon.known)}
    shipped = rewrite.TYPE_HEAD_PRIOR
    rows: list[dict[str, Any]] = []
    try:
        for weight in [float(w) for w in args.priors.split(",") if w.strip()]:
            rewrite.TYPE_HEAD_PRIOR = weight  # read when a rewriter's state is built
            rw = rewrite.QueryRewriter(lexicon, types=types)
            for name, queries in sets.items():
                row = {"queries": name, "type_head_prior": weight, "query_count": len(queries)}
                rows.append({**row, **accuracy(rw, queries), "shipped": weight == shipped})
                print(rows[-1], flush=True)
    finally:
        rewrite.TYPE_HEAD_PRIOR = shipped
    write_results(args.out, "completion", rows, key=KEY, run=this_run, markdown=_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
