"""The in-process search backend (single-machine default): BM25 + exact cosine search in memory.

It reads an :class:`~indexer.embedded_store.EmbeddedStore` folder and answers the same
:class:`~ranker.base.SearchBackend` calls as OpenSearch. Writes go to the store's durable log
first, then to memory; the BM25 matrix is rebuilt lazily on the next query after a write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from indexer.analysis import Synonyms, analyze, analyze_query
from indexer.base import WriteReport
from indexer.embedded_reviews import EmbeddedReviewStore
from indexer.embedded_store import EmbeddedStore
from indexer.errors import BadInputError
from indexer.manifest import Manifest
from indexer.product import Product
from indexer.schema import (
    COMBINED_FIELD,
    COMBINED_SOURCES,
    DEFAULT_FIELD_BOOSTS,
    DEFAULT_SYNONYM_WEIGHT,
    SEARCH_FIELDS,
    STRICT_FIELDS,
    text_fields,
)
from ranker.base import Filters, Scored
from ranker.bm25 import BestFieldBM25, BM25Index, BM25Params

log = logging.getLogger(__name__)


class EmbeddedBackend:
    name = "embedded"

    def __init__(
        self,
        store: EmbeddedStore,
        *,
        field_boosts: Mapping[str, float] = DEFAULT_FIELD_BOOSTS,
        bm25: BM25Params | None = None,
        synonyms: Synonyms | None = None,
        synonym_weight: float = DEFAULT_SYNONYM_WEIGHT,
        reviews: EmbeddedReviewStore | None = None,
    ):
        self.store = store
        self.reviews = reviews if reviews is not None else EmbeddedReviewStore(store.root)
        unknown = sorted(set(field_boosts) - set(SEARCH_FIELDS))
        if unknown or not any(b > 0 for b in field_boosts.values()):
            raise BadInputError(
                f"field boosts need a positive boost on at least one of {', '.join(SEARCH_FIELDS)} (unknown: {unknown})"
            )
        self.field_boosts = dict(field_boosts)
        self.bm25_params = bm25 or BM25Params()
        self.synonyms = synonyms if synonyms is not None else Synonyms.default()
        self.synonym_weight = synonym_weight
        self._lock = threading.RLock()
        self._version: str | None = None
        self.reload()

    # -- state ------------------------------------------------------------------------------
    def reload(self) -> None:
        """(Re)load the live version from disk."""
        snap = self.store.load()
        with self._lock:
            self._version = snap.version
            self._manifest = snap.manifest
            self._products = snap.products
            self._vectors = snap.vectors
            self._ids = [p.id for p in snap.products]
            self._pos = {pid: i for i, p in enumerate(snap.products) for pid in (p.id,)}
            self._terms = [self._analyze(p) for p in snap.products]
            self._index_filters()
            self._bm25: BM25Index | None = None
            self._strict: BestFieldBM25 | None = None
        log.info("embedded backend: %d products, version %s", len(self._products), snap.version)

    def _analyze(self, p: Product) -> dict[str, list[str]]:
        fields = {f: analyze(v) for f, v in text_fields(p).items() if v}
        fields[COMBINED_FIELD] = [t for f in COMBINED_SOURCES for t in fields.get(f, ())]
        return fields

    def _index_filters(self) -> None:
        self._ean: dict[str, str] | None = None  # built on first EAN lookup
        self._brand = np.asarray([p.brand.lower() for p in self._products], dtype=object)
        self._price = np.asarray(
            [np.nan if p.price is None else p.price for p in self._products], dtype=np.float64
        )
        self._stock = np.asarray(
            [-1 if p.in_stock is None else int(p.in_stock) for p in self._products], dtype=np.int8
        )

    def _index(self) -> BM25Index:
        with self._lock:
            if self._bm25 is None:
                self._bm25 = BM25Index(self._terms, self.field_boosts, self.bm25_params)
            return self._bm25

    def _strict_index(self) -> BestFieldBM25:
        with self._lock:
            if self._strict is None:
                self._strict = BestFieldBM25(self._terms, STRICT_FIELDS, self.bm25_params)
            return self._strict

    def _mask(self, filters: Filters) -> np.ndarray | None:
        if filters.empty:
            return None
        m = np.ones(len(self._products), dtype=bool)
        if filters.brands:
            m &= np.isin(self._brand, [b.lower() for b in filters.brands])
        with np.errstate(invalid="ignore"):
            if filters.price_min is not None:
                m &= self._price >= filters.price_min
            if filters.price_max is not None:
                m &= self._price <= filters.price_max
        if filters.in_stock is not None:
            m &= (self._stock == -1) | (self._stock == int(filters.in_stock))
        return m

    # -- SearchBackend ------------------------------------------------------------------------
    def _lexical_scores(self, query: str) -> np.ndarray:
        """BM25 of the query as typed, plus ``synonym_weight`` × BM25 of the synonym-expanded query
        (the OpenSearch backend sends the same two clauses)."""
        plain = list(dict.fromkeys(analyze(query)))
        idx = self._index()
        scores = idx.scores(plain)
        if self.synonym_weight > 0:
            expanded = list(dict.fromkeys(analyze_query(query, self.synonyms)))
            if expanded != plain:
                scores = scores + self.synonym_weight * idx.scores(expanded)
            else:
                scores = scores * (1.0 + self.synonym_weight)
        return scores

    def lexical(self, query: str, n: int, filters: Filters) -> list[Scored]:
        with self._lock:
            scores = self._lexical_scores(query)
            ok = scores > 0
            mask = self._mask(filters)
            if mask is not None:
                ok &= mask
            return self._top(scores, ok, n)

    def strict_lexical(self, query: str, n: int, filters: Filters) -> list[Scored]:
        with self._lock:
            if not len(self._products):
                return []
            scores, ok = self._strict_index().scores(analyze(query))
            mask = self._mask(filters)
            if mask is not None:
                ok &= mask
            return self._top(scores, ok, n)

    def knn(self, vector: np.ndarray, n: int, filters: Filters) -> list[Scored]:
        with self._lock:
            if not len(self._products):
                return []
            sims = self._vectors @ np.asarray(vector, dtype=np.float32)
            mask = self._mask(filters)
            ok = np.ones(len(sims), dtype=bool) if mask is None else mask
            return self._top(sims, ok, n)

    def hybrid(
        self, query: str, vector: np.ndarray, n: int, filters: Filters
    ) -> tuple[list[Scored], list[Scored]]:
        return self.lexical(query, n, filters), self.knn(vector, n, filters)

    def _top(self, scores: np.ndarray, ok: np.ndarray, n: int) -> list[Scored]:
        cand = np.flatnonzero(ok)
        if cand.size == 0:
            return []
        s = scores[cand]
        if cand.size > n:
            part = np.argpartition(-s, n - 1)[:n]
            cand, s = cand[part], s[part]
        ids = [self._ids[i] for i in cand]
        order = sorted(range(len(ids)), key=lambda j: (-float(s[j]), ids[j]))
        return [Scored(ids[j], float(s[j])) for j in order]

    def lexical_scores(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        with self._lock:
            scores = self._lexical_scores(query)
            return {
                i: float(scores[self._pos[i]]) for i in ids if i in self._pos and scores[self._pos[i]] > 0
            }

    def ids_for_eans(self, eans: Sequence[str]) -> dict[str, str]:
        """EAN → product id for the EANs some product carries."""
        with self._lock:
            if self._ean is None:
                self._ean = {}
                for p in self._products:
                    for e in p.ean:
                        self._ean.setdefault(e, p.id)
            return {e: self._ean[e] for e in eans if e in self._ean}

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            return {i: self._vectors[self._pos[i]].copy() for i in ids if i in self._pos}

    def fetch(self, ids: Sequence[str]) -> dict[str, Product]:
        """Products by id, with their review aggregates (read from the review log) attached."""
        with self._lock:
            found = {i: self._products[self._pos[i]] for i in ids if i in self._pos}
        stats = self.reviews.stats(list(found))
        return {i: replace(p, reviews=stats[i]) if i in stats else p for i, p in found.items()}

    def count(self) -> int:
        return len(self._products)

    def manifest(self) -> Manifest | None:
        return self._manifest

    # -- writes (durable first, then memory) ----------------------------------------------------
    def upsert(self, products: Sequence[Product], vectors: np.ndarray) -> WriteReport:
        report = self.store.upsert(products, vectors)
        with self._lock:
            new_rows = []
            for p, v in zip(products, np.asarray(vectors, dtype=np.float32), strict=True):
                if p.id in self._pos:
                    i = self._pos[p.id]
                    self._products[i] = p
                    self._vectors[i] = v
                    self._terms[i] = self._analyze(p)
                else:
                    self._pos[p.id] = len(self._products)
                    self._products.append(p)
                    self._ids.append(p.id)
                    self._terms.append(self._analyze(p))
                    new_rows.append(v)
            if new_rows:
                self._vectors = np.vstack([self._vectors, np.vstack(new_rows)])
            self._index_filters()
            self._bm25 = None
            self._strict = None
        return report

    def delete(self, ids: Sequence[str]) -> WriteReport:
        report = self.store.delete(ids)
        with self._lock:
            gone = {i for i in ids if i in self._pos}
            if gone:
                keep = [j for j, p in enumerate(self._products) if p.id not in gone]
                self._products = [self._products[j] for j in keep]
                self._terms = [self._terms[j] for j in keep]
                self._vectors = self._vectors[keep]
                self._ids = [p.id for p in self._products]
                self._pos = {p.id: j for j, p in enumerate(self._products)}
                self._index_filters()
                self._bm25 = None
                self._strict = None
        return report
