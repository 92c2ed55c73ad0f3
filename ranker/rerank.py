"""Second stage: rerank the first stage's candidates with a :class:`~ranker.base.Reranker`."""

from __future__ import annotations

import time
from dataclasses import replace

from indexer.errors import BadInputError
from ranker.base import Hit, Reranker, SearchResult, SourceScore
from ranker.retrieval import MAX_K, Retriever, SearchRequest

SOURCE = "cross_encoder"


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

    def search(self, req: SearchRequest) -> SearchResult:
        t0 = time.perf_counter()
        first = self.retriever.search(replace(req, k=max(req.k, self.candidates), with_products=True))
        hits = [h for h in first.hits if h.product is not None]
        t = time.perf_counter()
        scores = self.reranker.score(req.query, [h.product for h in hits])  # type: ignore[misc]
        rerank_ms = (time.perf_counter() - t) * 1000
        order = sorted(range(len(hits)), key=lambda i: (-float(scores[i]), i))
        out = []
        for rank, i in enumerate(order[: req.k], start=1):
            h = hits[i]
            sources = {**h.sources, SOURCE: SourceScore(float(scores[i]), rank)}
            out.append(
                Hit(
                    id=h.id,
                    score=float(scores[i]),
                    rank=rank,
                    sources=sources,
                    product=h.product if req.with_products else None,
                )
            )
        timings = {
            **first.timings_ms,
            "rerank": round(rerank_ms, 3),
            "total": round((time.perf_counter() - t0) * 1000, 3),
        }
        return SearchResult(hits=out, mode=first.mode, timings_ms=timings)
