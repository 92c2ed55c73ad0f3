"""Cross-encoder scores kept per (query, product text) for one model, so a head query's
candidates are scored once per text they show, not once per shopper who types it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexer.product import Product
from ranker.base import Reranker
from ranker.lazy import LRU
from ranker.rerank.cross_encoder import passage


class CachedReranker:
    """``inner`` with a bounded LRU of its scores by (query, the product's passage): a product
    whose text a write changed is scored anew; one cache per model (it wraps one reranker)."""

    def __init__(self, inner: Reranker, size: int):
        self.inner = inner
        self.name = inner.name
        self.scores: LRU[tuple[str, str], float] = LRU(size)

    def load(self) -> object:
        load = getattr(self.inner, "load", None)
        return load() if callable(load) else None

    def score(self, query: str, products: Sequence[Product]) -> np.ndarray:
        keys = [(query, passage(p)) for p in products]
        out = np.zeros(len(products), dtype=np.float32)
        missing: list[int] = []
        for i, k in enumerate(keys):
            got = self.scores.get(k)
            if got is None:
                missing.append(i)
            else:
                out[i] = got
        if missing:
            fresh = np.asarray(self.inner.score(query, [products[i] for i in missing]), dtype=np.float32)
            for i, s in zip(missing, fresh.reshape(-1).tolist(), strict=True):
                out[i] = s
                self.scores.put(keys[i], s)
        return out
