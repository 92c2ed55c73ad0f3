"""What each training-data source contributes to the cross-encoder: leave-one-source-out on a fold.

One fold of the reranker's query-level cross-validation (``--fold``, default 0; the same split
``shoprank train reranker --folds 5`` makes) is trained once per variant — all sources, and all
but one of ``pseudo`` (pseudo-queries from product fields), ``judgments`` (the graded dev
judgments of the training queries) and ``hard_negatives`` (BM25 / vector negatives) — with the
same data plan and training settings, and the fold's held-out queries are reranked by each
model. ``--reuse-all DIR`` takes the all-sources model of that fold from an earlier CV run
(``DIR/folds/fold-i``) instead of training it again. One fold is ~20 dev queries: differences
of a few points are within noise. Merges one row per variant (with its run's provenance) into
``OUT/reranker_sources.json`` and renders ``.md`` from it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.common import CHORUS, Run, RunNotes, Table, add_out, parser, write_results
from bench.report import table
from indexer.catalog import read_catalog
from plugin_api.backends import open_retriever
from plugin_api.settings import Settings
from ranker.base import Mode
from ranker.evaluation.relevance import compute_metrics, load_judgments
from ranker.rerank.cross_encoder import CrossEncoderReranker
from ranker.rerank.stage import RerankingRetriever
from training.cv import DataPlan, _runs, build_set
from training.data import SOURCES
from training.folds import kfold_queries
from training.reranker import TrainConfig, train_reranker

METRICS = ("ndcg@10", "ndcg_condensed@10", "judged@10", "mrr@10")


def render(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    rows = [
        [
            n,
            r.get("fold"),
            *(r["metrics"].get(m) for m in METRICS),
            r["examples"],
            r["train_s"],
            notes.mark(r),
        ]
        for n, r in doc["rows"].items()
    ]
    lines = [
        "# Cross-encoder training sources, leave-one-out (one CV fold, rerank = hybrid top 100 → cross-encoder)",
        "",
        "- one fold's held-out dev queries (unjudged = 0; compare rows of one fold only); each run's"
        " epochs, lr, max length and products for pseudo-queries are in its `parameters` in the JSON",
        "",
        *table(["variant", "fold", *METRICS, "examples", "train s", "run"], rows, 4),
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser("reranker_sources", __doc__)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-products", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--reuse-all", type=Path, help="an earlier `train reranker --folds` folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shoprank-source-ablation"))
    ap.add_argument("--data", type=Path, default=CHORUS, help=f"catalog + judgments folder ({CHORUS})")
    add_out(ap, "reranker_sources")
    args = ap.parse_args(argv)
    this_run = Run.start("reranker_sources", argv, args)
    qrels = load_judgments(args.data / "judgments_dev.csv")
    products = read_catalog(args.data).products
    s = Settings(device="cpu")
    retriever = open_retriever(s)
    train_q, test_q = list(kfold_queries(sorted(qrels), k=args.folds, seed=13))[args.fold]
    test_qrels = {q: qrels[q] for q in test_q}
    cfg = TrainConfig(
        epochs=args.epochs, lr=args.lr, max_length=args.max_length, device="cpu", checkpoint_every=0
    )
    variants = {"all sources": tuple(SOURCES)} | {
        f"without {src}": tuple(x for x in SOURCES if x != src) for src in SOURCES
    }
    rows: dict[str, dict[str, Any]] = {}
    hybrid = compute_metrics(_runs(retriever, test_q, Mode.HYBRID), test_qrels)
    rows["hybrid (no reranker)"] = {"metrics": hybrid, "examples": 0, "sources": {}, "train_s": 0.0}
    for name, sources in variants.items():
        plan = DataPlan(max_products=args.max_products, sources=sources)
        folder = args.work / name.replace(" ", "-")
        t0 = time.perf_counter()
        reuse = (
            args.reuse_all / "folds" / f"fold-{args.fold}"
            if args.reuse_all and sources == tuple(SOURCES)
            else None
        )
        if reuse is not None:
            folder = reuse
            ts_counts: dict[str, int] = json.loads((reuse / "manifest.json").read_text())["data_sources"]
            examples = sum(ts_counts.values())
        else:
            ts = build_set(products, {q: qrels[q] for q in train_q}, retriever, plan, test_q, progress=False)
            ts_counts, examples = ts.counts_by_source(), len(ts)
            train_reranker(ts.examples, folder, cfg, data_sources=ts_counts, progress=True)
        train_s = time.perf_counter() - t0
        reranker = CrossEncoderReranker(folder, device="cpu")
        run = _runs(
            RerankingRetriever(retriever, reranker, candidates=s.rerank_candidates), test_q, Mode.HYBRID
        )
        rows[name] = {
            "metrics": compute_metrics(run, test_qrels),
            "examples": examples,
            "sources": ts_counts,
            "train_s": round(train_s, 1),
            "reused": reuse is not None,
        }
        print(name, json.dumps({k: round(v, 4) for k, v in rows[name]["metrics"].items()}), flush=True)
    doc = write_results(
        args.out,
        "reranker_sources",
        [Table([{"variant": n, "fold": args.fold, **r} for n, r in rows.items()], ("variant",), keyed=True)],
        run=this_run,
        extra={
            "date": this_run.date,
            "machine": this_run.machine,
            "fold": args.fold,
            "test_queries": len(test_q),
            "config": {k: str(v) for k, v in vars(args).items()},
        },
        markdown=render,
    )
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
