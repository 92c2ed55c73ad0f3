"""How closely the strict keyword leg reproduces the pool the dev judgments were drawn from.

The Chorus dev judgments rate, per query, the products one keyword engine returned (up to 40 of
them). For each query this compares the judged products with the strict leg's matches (every
query term in some text field) and with its top 40 (per-term best-field BM25): how many judged
products the leg matches at all, for how many queries with fewer than 40 judged products the
judged set *is* the match set, and how much of a 40-product pool the leg's top 40 recovers.
Writes ``OUT/judgment_pool.json`` and ``OUT/judgment_pool.md``.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from bench.report import table
from indexer.embedded.store import EmbeddedStore
from plugin_api.settings import Settings
from ranker.base import Filters
from ranker.evaluation.relevance import load_judgments, machine_description
from ranker.retrieval.embedded import EmbeddedBackend

REPO = Path(__file__).resolve().parents[1]
POOL = 40  # the judgments' deepest regular pool


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, default=Settings().embedded_dir)
    ap.add_argument(
        "--judgments", type=Path, default=REPO.parent / "shared/data/chorus_icecat/judgments_dev.csv"
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "judgment_pool")
    args = ap.parse_args(argv)
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
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
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
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "judgment_pool.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# The judgment pool and the strict keyword leg",
        "",
        f"{report['date']} · {report['machine']} · {n_all} products, {len(qrels)} dev queries",
        "",
        *table(["measure", "value"], [[k, v] for k, v in report.items() if k not in ("date", "machine")], 4),
        "",
    ]
    (args.out / "judgment_pool.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
