"""Ranking features of a candidate, in one fixed order, with graceful defaults when missing.

Each feature is scaled to roughly [0, 1] or [-1, 1] so learned weights are comparable and an
explanation ("bm25 contributed 0.31") reads sensibly. A feature that is unknown for a product
(no reviews, no events, no shopper) takes its neutral value, so it contributes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from indexer.product import Product
from indexer.reviews import ReviewPrior, ReviewStats
from ranker.base import Constraint, Hit, TypeIntent
from ranker.query.constraints import constraint_match
from ranker.query.types import type_match
from ranker.ranking.lexical import LEXICAL_FEATURES, FieldTokens, field_tokens, lexical_features
from ranker.retrieval.retriever import STRICT_SOURCE

FEATURES = (
    "retrieval",  # first-stage (hybrid) rank as a DCG discount 1 / log2(1 + rank), in (0, 1]
    "bm25",  # BM25 min-max normalized over the request's candidates
    "vector",  # cosine similarity of query and product embeddings
    "cross_encoder",  # fine-tuned cross-encoder relevance in [0, 1]
    "title_coverage",  # share of the query's terms in the title, in [0, 1] (ranker.ranking.lexical)
    "field_coverage",  # share of the query's terms in title, brand, category and attributes
    "brand_in_query",  # 1 when the product's brand is named in the query
    "all_terms",  # 1 when every query term is in one of the product's text fields
    "strict_match",  # 1 when the strict keyword leg retrieved it (all terms, best-field BM25 top N)
    "sentiment",  # review sentiment aggregate in [-1, 1], shrunk towards the prior
    "review_count",  # log1p(reviews) / log1p(1000), capped at 1
    "rating",  # (mean stars - 3) / 2 in [-1, 1], shrunk towards the prior
    "popularity",  # time-decayed interaction share in [0, 1] (serving work feeds it)
    "personal_affinity",  # shopper-profile similarity in [-1, 1] (serving work feeds it)
    "constraint_match",  # the query's numbers (price, size, capacity…) met +1 / contradicted -1, mean
    "type_match",  # the product is of the type the query names +1, a related 0, another -1
)


@dataclass(frozen=True)
class ProductSignals:
    """What the shop knows about a product beyond its text (all optional)."""

    sentiment: float | None = None
    review_count: int = 0
    rating: float | None = None
    popularity: float | None = None


def signals_from_reviews(stats: ReviewStats, prior: ReviewPrior | None = None) -> ProductSignals:
    """The review part of a product's signals: shrunk sentiment and rating, and the count."""
    prior = prior or ReviewPrior()
    return ProductSignals(
        sentiment=stats.sentiment(prior) if stats.count else None,
        review_count=stats.count,
        rating=stats.rating(prior) if stats.rating_count else None,
    )


def _minmax(values: Sequence[float | None]) -> list[float]:
    present = [v for v in values if v is not None]
    if not present:
        return [0.0] * len(values)
    lo, hi = min(present), max(present)
    span = hi - lo
    return [0.0 if v is None else (1.0 if span == 0 else (v - lo) / span) for v in values]


def feature_matrix(
    hits: Sequence[Hit],
    *,
    query: str | None = None,
    signals: Mapping[str, ProductSignals] | None = None,
    affinity: Mapping[str, float] | None = None,
    prior: ReviewPrior | None = None,
    popularity: Mapping[str, float] | None = None,
    constraints: Sequence[Constraint] = (),
    intent: TypeIntent | None = None,
    types: Callable[[Product], Iterable[str]] | None = None,
    tokens_of: Callable[[Product], FieldTokens] = field_tokens,
) -> np.ndarray:
    """Rows = hits, columns = :data:`FEATURES`. A product's signals come from ``signals`` when
    given there, else from the review aggregate stored with the product (shrunk with ``prior``);
    ``popularity`` and ``affinity`` (per product id) come from shopper events. The lexical
    features need the ``query`` (without it they are 0); ``type_match`` needs the query's
    ``intent`` and ``types``, a product's type phrases; ``tokens_of``, its analyzed text (cached on
    the hot path: ranker.ranking.lexical.FieldTerms)."""
    signals = signals or {}
    affinity = affinity or {}
    popularity = popularity or {}
    bm25 = _minmax([h.sources["bm25"].score if "bm25" in h.sources else None for h in hits])
    lexical = lexical_features(query, [h.product for h in hits], tokens_of)
    out = np.zeros((len(hits), len(FEATURES)), dtype=np.float64)
    for i, h in enumerate(hits):
        sig = signals.get(h.id)
        if sig is None:
            stats = getattr(h.product, "reviews", None)
            sig = signals_from_reviews(stats, prior) if stats is not None else ProductSignals()
        vec = h.sources.get("vector")
        ce = h.sources.get("cross_encoder")
        strict = h.sources.get(STRICT_SOURCE)
        row = {
            "retrieval": 0.0 if not h.rank or h.rank < 1 else 1.0 / math.log2(1 + h.rank),
            "bm25": bm25[i],
            "vector": 0.0 if vec is None or vec.score is None else float(vec.score),
            "cross_encoder": 0.0 if ce is None or ce.score is None else float(ce.score),
            "strict_match": 0.0 if strict is None or strict.rank is None else 1.0,
            "sentiment": 0.0 if sig.sentiment is None else float(np.clip(sig.sentiment, -1, 1)),
            "review_count": min(1.0, math.log1p(max(0, sig.review_count)) / math.log1p(1000)),
            "rating": 0.0 if sig.rating is None else float(np.clip((sig.rating - 3.0) / 2.0, -1, 1)),
            "popularity": float(
                np.clip(popularity.get(h.id, 0.0) if sig.popularity is None else sig.popularity, 0, 1)
            ),
            "personal_affinity": float(np.clip(affinity.get(h.id, 0.0), -1, 1)),
            "constraint_match": constraint_match(constraints, h.product),
            "type_match": 0.0
            if intent is None or types is None or h.product is None
            else type_match(intent, types(h.product)),
            **{f: float(lexical[i, j]) for j, f in enumerate(LEXICAL_FEATURES)},
        }
        out[i] = [row[f] for f in FEATURES]
    return out
