"""Recommendations: "similar items" for a product and personal picks for a shopper, explained.

* **similar**: the product's vector neighbours plus the products its shoppers also engaged with
  (co-interaction), scored ``0.6 · cosine + 0.3 · co-interaction + 0.1 · sentiment``; the product
  itself and its duplicates (a shared EAN, the same brand + model name, or a near-identical
  embedding) are left out; MMR spreads the list.
* **user**: neighbours of the shopper's profile vector and the products their products co-occur
  with, scored ``0.4 · personal affinity + 0.4 · co-interaction + 0.2 · popularity``, without what
  the shopper already bought; a shopper with no profile gets the
  trending products (popularity with time decay). Each pick says which strategy produced it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from indexer.errors import BadInputError, NotFoundError
from indexer.product import Product
from indexer.reviews import ReviewPrior
from ranker.base import Filters, Hit, SearchBackend
from ranker.ranking.features import signals_from_reviews
from ranker.ranking.mmr import mmr, normalize_relevance
from ranker.signals.personalization import EventModel

SIMILAR_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"vector": 0.6, "co_interaction": 0.3, "sentiment": 0.1}
)
USER_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"personal_affinity": 0.4, "co_interaction": 0.4, "popularity": 0.2}
)
DUPLICATE_COSINE = 0.995
MAX_RECOMMENDATIONS = 100


@dataclass(frozen=True)
class Recommendation:
    id: str
    score: float
    product: Product | None
    explanation: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recommendations:
    items: list[Recommendation]
    strategy: str  # "similar", "profile", "trending" or "none"


def _model_key(p: Product) -> str:
    return re.sub(r"[^0-9a-z]+", "", f"{p.brand}|{p.name or p.title}".casefold())


def is_duplicate(a: Product, b: Product) -> bool:
    """Same EAN, or the same brand and model name (variants of one listing)."""
    if set(a.ean) & set(b.ean):
        return True
    return bool(a.name) and _model_key(a) == _model_key(b)


class Recommender:
    def __init__(
        self,
        backend: SearchBackend,
        events: EventModel,
        *,
        prior: ReviewPrior | None = None,
        device: str = "auto",
        neighbours: int = 100,
    ):
        self.backend = backend
        self.events = events
        self.prior = prior or ReviewPrior()
        self.device = device
        self.neighbours = neighbours

    @staticmethod
    def _check(k: int, diversity: float) -> None:
        if not 1 <= k <= MAX_RECOMMENDATIONS:
            raise BadInputError(f"k must be between 1 and {MAX_RECOMMENDATIONS}, got {k}")
        if not 0.0 <= diversity <= 1.0:
            raise BadInputError(f"diversity must be between 0 and 1, got {diversity}")

    def _diversify(
        self,
        ids: list[str],
        parts: Mapping[str, Mapping[str, float]],
        weights: Mapping[str, float],
        vectors: Mapping[str, np.ndarray],
        products: Mapping[str, Product],
        k: int,
        diversity: float,
    ) -> list[Recommendation]:
        if not ids:
            return []
        scores = np.asarray([sum(w * parts[f].get(i, 0.0) for f, w in weights.items()) for i in ids])
        lam = 1.0 - diversity
        if lam < 1.0 and len(ids) > 1:
            emb = np.vstack([vectors[i] for i in ids])
            res = mmr(normalize_relevance(scores), emb, min(k, len(ids)), lam, device=self.device)
            order, penalties = res.order, res.penalties
        else:
            order = sorted(range(len(ids)), key=lambda j: (-scores[j], j))[:k]
            penalties = [0.0] * len(order)
        out = []
        for j, pen in zip(order, penalties, strict=True):
            i = ids[j]
            contrib = {f: w * parts[f].get(i, 0.0) for f, w in weights.items()}
            out.append(
                Recommendation(
                    i,
                    float(scores[j]),
                    products.get(i),
                    {
                        "features": {f: float(parts[f].get(i, 0.0)) for f in weights},
                        "contributions": contrib,
                        "mmr": {"lambda": lam, "penalty": float(pen)},
                    },
                )
            )
        return out

    def _sentiment(self, products: Mapping[str, Product]) -> dict[str, float]:
        out = {}
        for i, p in products.items():
            if p.reviews is not None and p.reviews.count:
                s = signals_from_reviews(p.reviews, self.prior).sentiment
                if s is not None:
                    out[i] = s
        return out

    def similar(
        self, product_id: str, k: int = 10, diversity: float = 0.3, exclude: Iterable[str] = ()
    ) -> Recommendations:
        self._check(k, diversity)
        skip = set(exclude)
        src_vec = self.backend.vectors([product_id]).get(product_id)
        source = self.backend.fetch([product_id]).get(product_id)
        if src_vec is None or source is None:
            raise NotFoundError(f"unknown product {product_id!r}; similar items need a product in the index")
        near = self.backend.knn(src_vec, self.neighbours + 1 + len(skip), Filters())
        co = self.events.co_interactions(product_id)
        ids = list(dict.fromkeys([s.id for s in near] + list(co)))
        ids = [i for i in ids if i != product_id and i not in skip]
        vectors = self.backend.vectors(ids)
        products = self.backend.fetch(ids)
        unit = src_vec / (np.linalg.norm(src_vec) or 1.0)
        cos = {i: float(np.dot(unit, v) / (np.linalg.norm(v) or 1.0)) for i, v in vectors.items()}
        keep = [
            i
            for i in ids
            if i in vectors
            and i in products
            and cos[i] < DUPLICATE_COSINE
            and not is_duplicate(source, products[i])
        ]
        parts = {"vector": cos, "co_interaction": co, "sentiment": self._sentiment(products)}
        items = self._diversify(keep, parts, SIMILAR_WEIGHTS, vectors, products, k, diversity)
        return Recommendations(items, "similar")

    def for_user(
        self, client_id: str, k: int = 10, diversity: float = 0.3, exclude: Iterable[str] = ()
    ) -> Recommendations:
        """``exclude``: more products to leave out besides what the shopper bought."""
        self._check(k, diversity)
        profile = self.events.profile(client_id)
        skip = set(exclude) | (profile.owned if profile is not None else set())
        if profile is not None and not profile.empty:
            engaged = self.backend.vectors(list(profile.items))
            pvec = self.events.profile_vector(profile, engaged)
            if pvec is not None:
                near = self.backend.knn(pvec, self.neighbours + len(skip), Filters())
                co = self.events.co_scores(profile, k=self.neighbours + len(skip))
                ids = [i for i in dict.fromkeys([s.id for s in near] + list(co)) if i not in skip]
                vectors = self.backend.vectors(ids)
                products = self.backend.fetch(ids)
                ids = [i for i in ids if i in vectors and i in products]
                parts = {
                    "personal_affinity": self.events.affinity(
                        profile,
                        vectors,
                        {i: p.brand for i, p in products.items()},
                        pvec,
                        {i: p.category for i, p in products.items()},
                    ),
                    "co_interaction": co,
                    "popularity": self.events.popularity(ids),
                }
                items = self._diversify(ids, parts, USER_WEIGHTS, vectors, products, k, diversity)
                if items:
                    return Recommendations(items, "profile")
        top = self.events.trending(k, exclude=skip)
        if not top:
            return Recommendations([], "none")
        products = self.backend.fetch([p for p, _ in top])
        items = [
            Recommendation(
                p, s, products[p], {"features": {"popularity": s}, "contributions": {"popularity": s}}
            )
            for p, s in top
            if p in products
        ]
        return Recommendations(items, "trending")


def user_affinity(
    events: EventModel, backend: SearchBackend, client_id: str, hits: Sequence[Hit]
) -> dict[str, float]:
    """``personal_affinity`` of search candidates for one shopper ({} for unknown shoppers)."""
    profile = events.profile(client_id)
    if profile is None or profile.empty:
        return {}
    pvec = events.profile_vector(profile, backend.vectors(list(profile.items)))
    ids = [h.id for h in hits]
    brands = {h.id: h.product.brand for h in hits if h.product is not None}
    categories = {h.id: h.product.category for h in hits if h.product is not None}
    return events.affinity(profile, backend.vectors(ids), brands, pvec, categories)
