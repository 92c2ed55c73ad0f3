"""Fusion variants, cross-validated: which features and which training pairs make ``full`` good.

For each fold of a reranker trained with ``shoprank train reranker --folds K``, the fold's
cross-encoder scores the candidates of every dev query once — the hybrid top N plus the strict
keyword leg's top ``--strict`` that the hybrid list lacks, as ``full`` gathers them (cached in
``OUT/cache``, the same cache ``shoprank train fusion --cache`` uses); then each
variant's linear fusion is fitted on the fold's train queries and ranks its test queries. All
variants therefore see the same held-out cross-encoder scores; only the fusion differs.
Merges one row per pipeline into ``OUT/fusion_variants.json`` (``metrics[name]`` carries the row's
run; ``ndcg@10_vs_hybrid[name]`` and ``weights[name]`` belong to the same row and are replaced with
it) and renders ``OUT/fusion_variants.md`` from it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Run as BenchRun
from bench.common import (
    RunNotes,
    Table,
    add_device,
    add_judgments,
    add_out,
    parser,
    read_results,
    write_results,
)
from bench.report import table
from indexer.manifest import ModelManifest
from plugin_api.backends import open_retriever
from plugin_api.settings import Settings
from ranker.evaluation.relevance import (
    RUN_DEPTH,
    Run,
    compute_metrics,
    diversity_at,
    load_judgments,
)
from ranker.evaluation.significance import oracle_run, paired_bootstrap, per_query_ndcg
from ranker.ranking.features import FEATURES, feature_matrix
from ranker.ranking.linear_fusion import LinearFusion, fit_fusion
from ranker.ranking.mmr import mmr, normalize_relevance
from ranker.retrieval.retriever import STRICT_CANDIDATES
from training.fusion import (
    Candidates,
    cross_validate_fusion,
    fold_candidates,
    groups_from,
    out_of_fold,
    ranked_run,
)

METRICS = ["ndcg@10", "ndcg_condensed@10", "judged@10", "mrr@10", "ild@10", "distinct_brands@10"]
SHIPPED = "listnet: all features, oof"
RECIPE = "`train fusion` recipe: nested CV picks all features or all but the cross-encoder"
MMR_DIVERSITY = 0.3  # the MMR row: the `train fusion` recipe, then MMR with λ = 1 - 0.3 over the top 10
TEXT_ONLY = ["bm25", "vector", "cross_encoder"]
LEXICAL = ["title_coverage", "field_coverage", "brand_in_query"]
KEYWORD = ["all_terms", "strict_match"]
NO_CE = ["retrieval", "bm25", "vector"]
# name -> (features learned, grade of unjudged candidates or None = judged candidates only,
#          training scores: "in-fold" = the test fold's model on the train queries (it trained on
#          them, so over-confident) or "oof" = each train query scored by the model that held it out,
#          objective: "pairwise" logistic or "listnet")
VARIANTS: dict[str, tuple[list[str], float | None, str, str]] = {
    "pairwise: bm25+vector+ce, judged only, in-fold": (TEXT_ONLY, None, "in-fold", "pairwise"),
    "pairwise: bm25+vector+ce, unjudged = 0, in-fold": (TEXT_ONLY, 0.0, "in-fold", "pairwise"),
    "pairwise: +retrieval rank, unjudged = 0, in-fold": (
        ["retrieval", *TEXT_ONLY],
        0.0,
        "in-fold",
        "pairwise",
    ),
    "pairwise: bm25+vector+ce, unjudged = 0, oof": (TEXT_ONLY, 0.0, "oof", "pairwise"),
    "pairwise: +retrieval rank, unjudged = 0, oof": (["retrieval", *TEXT_ONLY], 0.0, "oof", "pairwise"),
    "pairwise: retrieval + ce, oof": (["retrieval", "cross_encoder"], 0.0, "oof", "pairwise"),
    "pairwise: retrieval + bm25 + vector (no ce), oof": (NO_CE, 0.0, "oof", "pairwise"),
    "pairwise: + lexical (no ce), oof": ([*NO_CE, *LEXICAL], 0.0, "oof", "pairwise"),
    "listnet: retrieval + bm25 + vector (no ce), oof": (NO_CE, 0.0, "oof", "listnet"),
    "listnet: + lexical (no ce), oof": ([*NO_CE, *LEXICAL], 0.0, "oof", "listnet"),
    "listnet: + lexical + ce, oof": ([*NO_CE, "cross_encoder", *LEXICAL], 0.0, "oof", "listnet"),
    "listnet: + lexical + keyword (no ce), oof": ([*NO_CE, *LEXICAL, *KEYWORD], 0.0, "oof", "listnet"),
    "listnet: + lexical + keyword + ce, oof": (
        [*NO_CE, "cross_encoder", *LEXICAL, *KEYWORD],
        0.0,
        "oof",
        "listnet",
    ),
    "pairwise: all features, oof": (list(FEATURES), 0.0, "oof", "pairwise"),
    SHIPPED: (list(FEATURES), 0.0, "oof", "listnet"),
}


def order_run(cands: Candidates, queries: list[str], source: str | None) -> Run:
    """Rank by the first stage (source None: its own list only, without the strict leg's extra
    candidates, rank 0) or by one source's rank over all candidates."""
    run: Run = {}
    for q in queries:
        hits = cands.get(q, [])
        if source is None:
            ranked = sorted((h for h in hits if h.rank >= 1), key=lambda h: h.rank)
        else:
            ranked = sorted(hits, key=lambda h: h.sources[source].rank or 0)
        run[q] = {h.id: float(len(ranked) - r) for r, h in enumerate(ranked)}
    return run


def mmr_run(
    cands: Candidates, queries: list[str], model: LinearFusion, vectors: Any, diversity: float
) -> Run:
    """The full pipeline's order with MMR: fused scores, MMR over the top 10, the rest by score."""
    run: Run = {}
    for q in queries:
        hits = cands.get(q, [])
        if not hits:
            continue
        scores = model.score(feature_matrix(hits, query=q))
        vecs = vectors([h.id for h in hits])
        emb = np.vstack([vecs[h.id] for h in hits])
        top = mmr(normalize_relevance(scores), emb, 10, 1.0 - diversity, device="cpu").order
        rest = sorted((i for i in range(len(hits)) if i not in set(top)), key=lambda i: (-scores[i], i))
        order = (top + rest)[:RUN_DEPTH]
        run[q] = {hits[i].id: float(len(order) - r) for r, i in enumerate(order)}
    return run


def render(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    vs = doc.get("ndcg@10_vs_hybrid", {})

    def delta(n: str) -> list[str]:
        c = vs.get(n)
        return [f"{c['delta']:+.4f}", f"[{c['low']:+.4f}, {c['high']:+.4f}]"] if c else ["", ""]

    rows = [[n, *(m[k] for k in METRICS), *delta(n), notes.mark(m)] for n, m in doc["metrics"].items()]
    lines = [
        "# Fusion variants (query-level k-fold, held-out)",
        "",
        "- candidates: hybrid top N + the strict keyword leg's top M (those the hybrid list lacks); the"
        " reranker, folds, N and M of each row are in its run (JSON `metrics[name]`)",
        "- Δ: nDCG@10 minus hybrid's (of the same run), per query, with a 95% paired bootstrap interval"
        " over the queries; the ceiling row puts each query's candidates in judged order (the best any"
        " reranker can do)",
        "",
        *table(["pipeline", *METRICS, "Δ nDCG@10", "95% interval", "run"], rows, 4),
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser("fusion_variants", __doc__)
    ap.add_argument("--reranker", type=Path, required=True)
    add_judgments(ap)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument(
        "--strict",
        type=int,
        default=STRICT_CANDIDATES,
        help="strict keyword leg's extra candidates (0: none)",
    )
    ap.add_argument(
        "--cache", type=Path, help="cross-encoder score cache (default OUT/cache; share with train fusion)"
    )
    add_device(ap)
    ap.add_argument(
        "--runtimes",
        default="torch",
        help="reranker runtimes, e.g. torch,onnx-int8 (onnx needs `shoprank export --folds`)",
    )
    add_out(ap, "fusion_variants")
    args = ap.parse_args(argv)
    this_run = BenchRun.start("fusion_variants", argv, args)
    manifest = ModelManifest.load(args.reranker, kind="cross-encoder")
    qrels = load_judgments(args.judgments)
    queries = sorted(qrels)
    s = Settings(device=args.device)
    retriever = open_retriever(s)
    cache_dir = args.cache or args.out / "cache"
    runtimes = args.runtimes.split(",")
    mmr_name = f"{RECIPE} + MMR (diversity {MMR_DIVERSITY})"
    names = ["hybrid"] + [f"{n} [{rt}]" for rt in runtimes for n in ["rerank", *VARIANTS, RECIPE, mmr_name]]
    backend = retriever.backend

    def lookup(ids: Any) -> Any:
        vecs, products = backend.vectors(ids), backend.fetch(ids)
        emb = np.vstack([vecs[i] for i in ids])
        return emb, [products[i].brand if i in products else "" for i in ids]

    runs: dict[str, Run] = {name: {} for name in names}
    weights: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    scoring_s: dict[str, float] = {}
    for rt in runtimes:
        t = time.perf_counter()
        fold_cands = {
            f["fold"]: fold_candidates(
                args.reranker,
                f["fold"],
                queries,
                retriever,
                args.candidates,
                runtime=rt,
                device=s.device,
                cache_dir=cache_dir,
                strict=args.strict,
            )
            for f in manifest.folds
        }
        scoring_s[rt] = time.perf_counter() - t
        # Fusion learns from out-of-fold cross-encoder scores (see training.fusion).
        oof = out_of_fold(fold_cands, manifest.folds)
        for f in manifest.folds:
            cands = fold_cands[f["fold"]]
            test_q = [q for q in f["test_queries"] if q in qrels]
            train_q = [q for q in queries if q not in set(f["test_queries"])]
            if rt == runtimes[0]:
                runs["hybrid"].update(order_run(cands, test_q, None))
            runs[f"rerank [{rt}]"].update(order_run(cands, test_q, "cross_encoder"))
            for name, (features, unjudged, source, objective) in VARIANTS.items():
                train_cands = oof if source == "oof" else cands
                groups = groups_from(train_cands, qrels, train_q, unjudged)
                model = fit_fusion(objective, groups, features=features)
                weights[f"{name} [{rt}]"].append({k: round(v, 3) for k, v in model.weights.items() if v})
                runs[f"{name} [{rt}]"].update(ranked_run(cands, test_q, model))
        # The shipped recipe, the same code `shoprank train fusion` runs (nested feature-set choice).
        cv = cross_validate_fusion(fold_cands, manifest.folds, qrels)
        runs[f"{RECIPE} [{rt}]"] = cv.held_out
        weights[f"{RECIPE} [{rt}]"] = [
            {"feature_set": f["feature_set"], **{k: round(v, 3) for k, v in f["weights"].items() if v}}
            for f in cv.folds
        ]
        for f in manifest.folds:
            test_q = [q for q in f["test_queries"] if q in qrels]
            runs[f"{mmr_name} [{rt}]"].update(
                mmr_run(
                    fold_cands[f["fold"]], test_q, cv.fold_models[f["fold"]], backend.vectors, MMR_DIVERSITY
                )
            )
    ceiling = f"ceiling: the candidates in judged order (hybrid top {args.candidates} + strict {args.strict})"
    every = fold_cands[manifest.folds[0]["fold"]]  # every fold's candidates are the same products
    runs[ceiling] = oracle_run(
        {q: {h.id: float(-i) for i, h in enumerate(every.get(q, []))} for q in queries}, qrels
    )
    results = {
        name: {**compute_metrics(run, qrels), **diversity_at(run, lookup)} for name, run in runs.items()
    }
    base = per_query_ndcg(runs["hybrid"], qrels)
    vs_hybrid = {
        n: paired_bootstrap(base, per_query_ndcg(r, qrels)) for n, r in runs.items() if n != "hybrid"
    }
    per_row = {
        "reranker": manifest.name,
        "folds": len(manifest.folds),
        "candidates": args.candidates,
        "strict_candidates": args.strict,
    }
    previous = read_results(args.out, "fusion_variants")
    doc = write_results(
        args.out,
        "fusion_variants",
        [
            Table(
                [{"pipeline": n, **m, **per_row} for n, m in results.items()], ("pipeline",), "metrics", True
            )
        ],
        run=this_run,
        extra={"date": this_run.date, "machine": this_run.machine}
        | per_row
        | {
            "scoring_seconds": {
                **previous.get("scoring_seconds", {}),
                **{k: round(v, 1) for k, v in scoring_s.items()},
            },
            "ndcg@10_vs_hybrid": {
                **previous.get("ndcg@10_vs_hybrid", {}),
                **{n: c.as_dict() for n, c in vs_hybrid.items()},
            },
            "weights": {**previous.get("weights", {}), **weights},
        },
        markdown=render,
    )
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
