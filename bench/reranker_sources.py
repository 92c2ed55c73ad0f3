"""What each training-data source contributes to the cross-encoder: leave-one-source-out on a fold.

One fold of the reranker's query-level cross-validation (``--fold``, default 0; the same split
``shoprank train reranker --folds 5`` makes) is trained once per variant — all sources, and all
but one of ``pseudo`` (pseudo-queries from product fields), ``judgments`` (the graded dev
judgments of the training queries) and ``hard_negatives`` (BM25 / vector negatives) — with the
same data plan and training settings, and the fold's held-out queries are reranked by each
model. ``--reuse-all DIR`` takes the all-sources model of that fold from an earlier CV run
(``DIR/folds/fold-i``) instead of training it again. One fold is ~20 dev queries: differences
of a few points are within noise. Writes ``OUT/reranker_sources.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import table
from indexer.catalog import read_catalog
from plugin_api.backends import open_retriever
from plugin_api.settings import Settings
from ranker.base import Mode
from ranker.evaluation.relevance import compute_metrics, load_judgments, machine_description
from ranker.rerank.cross_encoder import CrossEncoderReranker
from ranker.rerank.stage import RerankingRetriever
from training.cv import DataPlan, _runs, build_set
from training.data import SOURCES
from training.folds import kfold_queries
from training.reranker import TrainConfig, train_reranker

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "chorus_icecat"
METRICS = ("ndcg@10", "ndcg_condensed@10", "judged@10", "mrr@10")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-products", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--reuse-all", type=Path, help="an earlier `train reranker --folds` folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shoprank-source-ablation"))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reranker_sources")
    args = ap.parse_args(argv)
    qrels = load_judgments(DATA / "judgments_dev.csv")
    products = read_catalog(DATA).products
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
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "fold": args.fold,
        "test_queries": len(test_q),
        "config": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reranker_sources.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Cross-encoder training sources, leave-one-out (one CV fold, rerank = hybrid top 100 → cross-encoder)",
        "",
        f"- date: {report['date']}; machine: {report['machine']}",
        f"- fold {args.fold} of {args.folds}: {len(test_q)} held-out dev queries (unjudged = 0); "
        f"{args.epochs} epochs, lr {args.lr}, max length {args.max_length}, {args.max_products} products for pseudo-queries",
        "",
        *table(
            ["variant", *METRICS, "examples", "train s"],
            [
                [n, *(r["metrics"].get(m) for m in METRICS), r["examples"], r["train_s"]]
                for n, r in rows.items()
            ],
            4,
        ),
    ]
    (args.out / "reranker_sources.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
