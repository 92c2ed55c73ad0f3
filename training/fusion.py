"""Learn the fusion weights with the reranker's query-level folds, then on everything.

For fold i the fusion model is fitted on the train queries' judged candidates, scored by that
fold's cross-encoder (``<reranker>/folds/fold-i``, which never saw the fold's test queries), and
the ``full`` pipeline answers the test queries. The shipped fusion model is fitted on all queries
with the shipped cross-encoder. Writes ``<out>/fusion.json`` with the cross-validated metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import IndexMismatchError
from indexer.manifest import ModelManifest
from ranker.cross_encoder import KIND as CE_KIND
from ranker.cross_encoder import CrossEncoderReranker
from ranker.evaluation import RUN_DEPTH, Qrels, Run, compute_metrics
from ranker.features import feature_matrix
from ranker.full import FullOptions, FullPipeline
from ranker.linear_fusion import LinearFusion, fit_pairwise
from ranker.rerank import with_cross_encoder
from ranker.retrieval import Retriever, SearchRequest

log = logging.getLogger(__name__)


@dataclass
class FusionReport:
    model: LinearFusion
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    folds: list[dict[str, Any]] = field(default_factory=list)


def _groups(
    queries: list[str], qrels: Qrels, retriever: Retriever, reranker: CrossEncoderReranker, candidates: int
) -> list[tuple[np.ndarray, list[float]]]:
    groups = []
    for q in queries:
        hits = retriever.search(SearchRequest(q, k=candidates)).hits
        judged = [h for h in hits if h.id in qrels.get(q, {}) and h.product is not None]
        if len({qrels[q][h.id] for h in judged}) < 2:
            continue
        judged = with_cross_encoder(reranker, q, judged)
        groups.append((feature_matrix(judged), [float(qrels[q][h.id]) for h in judged]))
    return groups


def _run(pipe: FullPipeline, queries: list[str]) -> Run:
    run: Run = {}
    for q in queries:
        hits = pipe.search(SearchRequest(q, k=RUN_DEPTH, with_products=False), FullOptions()).hits
        run[q] = {h.id: float(len(hits) - i) for i, h in enumerate(hits)}
    return run


def train_fusion_cv(
    reranker_dir: str | Path,
    qrels: Qrels,
    retriever: Retriever,
    out: str | Path,
    *,
    candidates: int = 100,
    device: str = "auto",
) -> FusionReport:
    reranker_dir = Path(reranker_dir)
    manifest = ModelManifest.load(reranker_dir, kind=CE_KIND)
    held_out: Run = {}
    folds = []
    for f in manifest.folds:
        fold_dir = reranker_dir / "folds" / f"fold-{f['fold']}"
        if not fold_dir.exists():
            raise IndexMismatchError(f"{fold_dir} is missing; retrain the reranker with --folds")
        test_q = [q for q in f["test_queries"] if q in qrels]
        train_q = [q for q in qrels if q not in set(f["test_queries"])]
        reranker = CrossEncoderReranker(fold_dir, device=device)
        model = fit_pairwise(_groups(train_q, qrels, retriever, reranker, candidates))
        run = _run(FullPipeline(retriever, reranker, model, candidates=candidates), test_q)
        held_out.update(run)
        folds.append({"fold": f["fold"], "weights": dict(model.weights), "test_queries": len(test_q)})
        log.info("fusion fold %s: weights %s", f["fold"], {k: round(v, 3) for k, v in model.weights.items()})
    final_reranker = CrossEncoderReranker(reranker_dir, device=device)
    final = fit_pairwise(_groups(sorted(qrels), qrels, retriever, final_reranker, candidates))
    metrics = {"full": compute_metrics(held_out, qrels)} if held_out else {}
    model = LinearFusion(
        final.weights,
        final.bias,
        {**dict(final.meta), "reranker": manifest.name, "cross_validated": metrics, "folds": folds},
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "fusion.json")
    return FusionReport(model, metrics, folds)
