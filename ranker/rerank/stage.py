"""Second stage: rerank the first stage's candidates with a :class:`~ranker.base.Reranker`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from indexer.errors import BadInputError
from ranker.base import MAX_K, Hit, Reranker, SearchOptions, SearchRequest, SearchResult, SourceScore
from ranker.retrieval.retriever import Retriever

SOURCE = "cross_encoder"


def with_cross_encoder(reranker: Reranker, query: str, hits: Sequence[Hit]) -> list[Hit]:
    """The hits (all with products) with a ``cross_encoder`` source: the reranker's score and its
    rank among these hits (ties keep the input order)."""
    scores = reranker.score(query, [h.product for h in hits])  # type: ignore[misc]
    order = sorted(range(len(hits)), key=lambda i: (-float(scores[i]), i))
    rank = {i: r for r, i in enumerate(order, start=1)}
    return [
        replace(h, sources={**h.sources, SOURCE: SourceScore(float(scores[i]), rank[i])})
        for i, h in enumerate(hits)
    ]


class RerankingRetriever:
    """Retrieve ``candidates`` hits (hybrid by default), rescore them, return the top k.

    Every hit keeps its first-stage sources and gains ``cross_encoder`` (score, rank); ties in the
    reranker's score keep the first-stage order.
    """

    def __init__(self, retriever: Retriever, reranker: Reranker, *, candidates: int = 100):
        if not 1 <= candidates <= MAX_K:
            raise BadInputError(f"rerank candidates must be between 1 and {MAX_K}")
        self.retriever = retriever
        self.reranker = reranker
        self.candidates = candidates

    def search(self, req: SearchRequest, options: SearchOptions | None = None) -> SearchResult:
        t0 = time.perf_counter()
        first = self.retriever.search(replace(req, k=max(req.k, self.candidates), with_products=True))
        hits = [h for h in first.hits if h.product is not None]
        t = time.perf_counter()
        scored = with_cross_encoder(self.reranker, req.query, hits)
        rerank_ms = (time.perf_counter() - t) * 1000
        ranked = sorted(scored, key=lambda h: h.sources[SOURCE].rank or 0)[: req.k]
        out = [
            replace(
                h,
                score=float(h.sources[SOURCE].score or 0.0),
                rank=rank,
                product=h.product if req.with_products else None,
            )
            for rank, h in enumerate(ranked, start=1)
        ]
        timings = {
            **first.timings_ms,
            "rerank": round(rerank_ms, 3),
            "total": round((time.perf_counter() - t0) * 1000, 3),
        }
        return SearchResult(hits=out, mode=first.mode, timings_ms=timings)
