"""Train the reranker with query-level k-fold cross-validation, then the model to ship.

For each fold the training set is built without the fold's test queries (nor their near-duplicates),
a model is trained, and the test queries are answered by ``hybrid`` and by ``rerank`` (hybrid →
cross-encoder). Every dev query is thus scored exactly once by a model that never saw it; the
metrics are computed over those held-out runs. The shipped model is then trained on everything,
and its manifest records the sources, the folds and the cross-validated metrics.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from indexer.product import Product
from ranker.base import Filters, Searcher, SearchRequest
from ranker.evaluation.relevance import RUN_DEPTH, Qrels, Run, compute_metrics
from ranker.ranking.pipelines import PipelineParts, build_pipeline
from ranker.rerank.cross_encoder import CrossEncoderReranker
from ranker.retrieval.retriever import Retriever
from training.data import SOURCES, TrainingSet, build_training_set
from training.folds import kfold_queries, leaks
from training.reranker import TrainConfig, train_reranker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataPlan:
    max_products: int | None = 3000
    per_product: int = 2
    negatives_per_query: int = 4
    sources: tuple[str, ...] = tuple(SOURCES)
    seed: int = 13


@dataclass
class CVReport:
    out_dir: Path
    folds: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    final_sources: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _callables(retriever: Retriever) -> tuple[Any, Any]:
    backend = retriever.backend

    def lexical(q: str, n: int) -> list[str]:
        return [s.id for s in backend.lexical(q, n, Filters())]

    def vector(q: str, n: int) -> list[str]:
        return [s.id for s in backend.knn(retriever.embed_query(q), n, Filters())]

    return lexical, vector


def build_set(
    products: list[Product],
    qrels: Qrels,
    retriever: Retriever,
    plan: DataPlan,
    exclude: list[str],
    progress: bool,
) -> TrainingSet:
    lexical, vector = _callables(retriever)
    return build_training_set(
        products,
        qrels,
        lexical=lexical,
        vector=vector,
        exclude_queries=exclude,
        per_product=plan.per_product,
        negatives_per_query=plan.negatives_per_query,
        max_products=plan.max_products,
        seed=plan.seed,
        sources=plan.sources,
        progress=progress,
    )


def _runs(searcher: Searcher, queries: list[str]) -> Run:
    run: Run = {}
    for q in queries:
        hits = searcher.search(SearchRequest(q, k=RUN_DEPTH, with_products=False)).hits
        run[q] = {h.id: float(len(hits) - i) for i, h in enumerate(hits)}
    return run


def train_with_cv(
    products: list[Product],
    qrels: Qrels,
    retriever: Retriever,
    out_dir: str | Path,
    *,
    folds: int = 5,
    plan: DataPlan | None = None,
    config: TrainConfig | None = None,
    candidates: int = 100,
    progress: bool = False,
) -> CVReport:
    plan = plan or DataPlan()
    cfg = config or TrainConfig()
    out = Path(out_dir)
    t0 = time.perf_counter()
    report = CVReport(out)
    held_out: dict[str, Run] = {"hybrid": {}, "rerank": {}}
    if folds > 1:
        for i, (train_q, test_q) in enumerate(kfold_queries(sorted(qrels), k=folds, seed=plan.seed)):
            assert not leaks(train_q, test_q), "a test query leaked into training"
            ts = build_set(products, {q: qrels[q] for q in train_q}, retriever, plan, test_q, progress)
            fold_dir = out / "folds" / f"fold-{i}"
            log.info("fold %d/%d: %d training examples %s", i + 1, folds, len(ts), ts.counts_by_source())
            train_reranker(ts.examples, fold_dir, cfg, data_sources=ts.counts_by_source(), progress=progress)
            reranker = CrossEncoderReranker(fold_dir, device=cfg.device)
            parts = PipelineParts(retriever, reranker, candidates=candidates)
            for name in held_out:
                held_out[name].update(_runs(build_pipeline(name, parts), test_q))
            fold_qrels = {q: qrels[q] for q in test_q}
            report.folds.append(
                {
                    "fold": i,
                    "test_queries": sorted(test_q),
                    "train_examples": len(ts),
                    "sources": ts.counts_by_source(),
                    "data_hash": ts.data_hash(),
                    "metrics": {
                        name: _safe_metrics({q: held_out[name][q] for q in test_q}, fold_qrels)
                        for name in held_out
                    },
                }
            )
        report.metrics = {name: compute_metrics(run, qrels) for name, run in held_out.items()}
    final = build_set(products, qrels, retriever, plan, [], progress)
    report.final_sources = final.counts_by_source()
    train_reranker(
        final.examples,
        out,
        cfg,
        data_sources=final.counts_by_source(),
        metrics={"cross_validated": report.metrics, "folds": folds, "data_plan": asdict(plan)},
        folds=report.folds,
        progress=progress,
    )
    report.seconds = time.perf_counter() - t0
    return report


def _safe_metrics(run: Run, qrels: Qrels) -> dict[str, float]:
    if not any(r > 0 for d in qrels.values() for r in d.values()):
        return {}
    return compute_metrics(run, qrels)
