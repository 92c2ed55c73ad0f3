"""The full ranking pipeline: retrieve → cross-encoder → learned fusion → MMR → top k, explained.

Each hit's ``score`` is the fused relevance, ``bias + Σ contributions`` exactly; MMR then decides
the order, and its penalty for resembling products above is reported beside the contributions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from indexer.errors import BadInputError
from indexer.product import Product
from indexer.reviews import ReviewPrior
from ranker.base import MAX_K, Hit, Reranker, SearchOptions, SearchRequest, SearchResult
from ranker.ranking.features import FEATURES, ProductSignals, feature_matrix
from ranker.ranking.lexical import FieldTerms
from ranker.ranking.linear_fusion import LinearFusion
from ranker.ranking.mmr import mmr, normalize_relevance
from ranker.rerank.stage import with_cross_encoder
from ranker.retrieval.retriever import STRICT_CANDIDATES, Retriever

# Shop signals the dev judgments cannot teach (they hold no reviews and no events, so a learned
# fusion gives these features weight 0): hand-set nudges, small next to the text features.
SHOP_SIGNAL_WEIGHTS = MappingProxyType(
    {"sentiment": 0.3, "rating": 0.2, "popularity": 0.3, "personal_affinity": 0.5}
)
# The query's own numbers ("under 100", "55 inch"): a hand-set nudge too, since the dev judgments
# hold almost no such query; about half what a strict keyword match weighs in the shipped fusion.
# The product type it names ("printer" → printers, not printer drums): a smaller hand-set nudge
# (bench/typed_queries.py reports nDCG and type-precision@10 with it on and off).
QUERY_SIGNAL_WEIGHTS = MappingProxyType({"constraint_match": 1.0, "type_match": 0.25})
# Until `shoprank train fusion` has learned weights: the cross-encoder leads, retrieval breaks ties.
DEFAULT_FUSION = LinearFusion(
    {"cross_encoder": 1.0, "bm25": 0.2, "vector": 0.2, **SHOP_SIGNAL_WEIGHTS, **QUERY_SIGNAL_WEIGHTS}
)
# Without a cross-encoder, `full` uses ranker.ranking.shipped.text_fusion(): text weights learned by
# `shoprank train fusion` on the dev judgments (a package resource with its provenance) plus these
# shop signals.


class FullPipeline:
    def __init__(
        self,
        retriever: Retriever,
        reranker: Reranker | None,
        fusion: LinearFusion = DEFAULT_FUSION,
        *,
        candidates: int = 100,
        strict_candidates: int = STRICT_CANDIDATES,
        signals: Callable[[list[str]], Mapping[str, ProductSignals]] | None = None,
        device: str = "auto",
        popularity: Callable[[list[str]], Mapping[str, float]] | None = None,
        personal: Callable[[str, list[Hit]], Mapping[str, float]] | None = None,
        prior: ReviewPrior | None = None,
        types: Callable[[Product], Iterable[str]] | None = None,
        rerank_top: int | None = None,
    ):
        if not 1 <= candidates <= MAX_K:
            raise BadInputError(f"candidates must be between 1 and {MAX_K}")
        if not 0 <= strict_candidates <= MAX_K:
            raise BadInputError(f"strict candidates must be between 0 and {MAX_K}")
        self.retriever = retriever
        self.reranker = reranker
        self.fusion = fusion
        self.candidates = candidates
        self.strict_candidates = strict_candidates
        self.signals = signals
        self.device = device
        self.popularity = popularity
        self.personal = personal
        self.prior = prior  # shrinks review sentiment and rating (None: ReviewPrior's defaults)
        self.types = types  # a product's type phrases (ranker.query.types), for type_match
        if rerank_top is not None and rerank_top < 1:
            raise BadInputError("rerank_top must be at least 1")
        # the cross-encoder reads the top M of a first pass (the fusion without it; None: all)
        self.rerank_top = rerank_top
        self.field_terms = FieldTerms()  # candidates' analyzed text, kept across queries

    def search(self, req: SearchRequest, options: SearchOptions | None = None) -> SearchResult:
        opts = options or SearchOptions()
        t0 = time.perf_counter()
        first = self.retriever.search(
            replace(req, k=max(req.k, self.candidates), with_products=True), strict=self.strict_candidates
        )
        hits = [h for h in first.hits if h.product is not None]
        timings: dict[str, float] = dict(first.timings_ms)
        if not hits:
            return SearchResult([], first.mode, timings)
        fusion = self.fusion.with_overrides(opts.weights)
        ids = [h.id for h in hits]
        affinity = dict(opts.user_affinity)
        if opts.user_id and self.personal is not None:
            affinity = {**self.personal(opts.user_id, hits), **affinity}
        x = feature_matrix(
            hits,
            query=req.query,
            signals=self.signals(ids) if self.signals else None,
            affinity=affinity,
            prior=self.prior,
            popularity=self.popularity(ids) if self.popularity else None,
            constraints=req.constraints,
            intent=req.intent,
            types=self.types,
            tokens_of=self.field_terms,
        )
        # A fusion that weighs the cross-encoder 0 (e.g. `train fusion` found it does not help)
        # does not pay for it; a per-request weight turns it back on.
        if self.reranker is not None and fusion.weights.get("cross_encoder", 0.0) != 0.0:
            t = time.perf_counter()
            hits = self._cross_encoded(req.query, hits, x, fusion)
            timings["rerank"] = _ms(t)
        relevance = fusion.score(x)
        t = time.perf_counter()
        lam = 1.0 - opts.diversity
        if lam < 1.0:
            vecs = self.retriever.backend.vectors(ids)
            dim = len(next(iter(vecs.values()))) if vecs else 1
            emb = np.vstack([vecs.get(i, np.zeros(dim, dtype=np.float32)) for i in ids])
            res = mmr(normalize_relevance(relevance), emb, req.k, lam, device=self.device)
            order, penalties = res.order, res.penalties
        else:
            order = sorted(range(len(hits)), key=lambda i: (-relevance[i], i))[: req.k]
            penalties = [0.0] * len(order)
        timings["fuse_mmr"] = _ms(t)
        contributions = fusion.contributions(x) if opts.explain else None
        out = []
        for rank, (i, pen) in enumerate(zip(order, penalties, strict=True), start=1):
            h = hits[i]
            explanation: dict[str, Any] | None = None
            if contributions is not None:
                explanation = {
                    "features": {f: float(x[i, j]) for j, f in enumerate(FEATURES)},
                    "contributions": contributions[i],
                    "relevance": float(relevance[i]),
                    "mmr": {"lambda": lam, "penalty": float(pen)},
                }
            out.append(_hit(h, float(relevance[i]), rank, req.with_products, explanation))
        timings["total"] = _ms(t0)
        return SearchResult(out, first.mode, timings)

    def _cross_encoded(self, query: str, hits: list[Hit], x: np.ndarray, fusion: LinearFusion) -> list[Hit]:
        """The hits with the cross-encoder's source on the top :attr:`rerank_top` of a first pass
        (the fusion with the cross-encoder's feature still 0), whose feature column in ``x`` it
        fills in; the others keep it 0, as a product the cross-encoder found irrelevant."""
        top = list(range(len(hits)))
        if self.rerank_top is not None and self.rerank_top < len(hits):
            first = fusion.score(x)
            top = sorted(top, key=lambda i: (-first[i], i))[: self.rerank_top]
        assert self.reranker is not None
        scored = with_cross_encoder(self.reranker, query, [hits[i] for i in top])
        out = list(hits)
        column = FEATURES.index("cross_encoder")
        for i, h in zip(top, scored, strict=True):
            out[i] = h
            x[i, column] = float(h.sources["cross_encoder"].score or 0.0)
        return out


@dataclass(frozen=True)
class ExplainedHit(Hit):
    explanation: Mapping[str, Any] | None = None


def _hit(h: Hit, score: float, rank: int, with_product: bool, explanation: Mapping[str, Any] | None) -> Hit:
    return ExplainedHit(
        id=h.id,
        score=score,
        rank=rank,
        sources=h.sources,
        product=h.product if with_product else None,
        explanation=explanation,
    )


def _ms(t: float) -> float:
    return round((time.perf_counter() - t) * 1000.0, 3)
