"""The in-process search backend (single-machine default): BM25 + exact cosine search in memory.

It reads an :class:`~indexer.embedded.store.EmbeddedStore` folder and answers the same
:class:`~ranker.base.SearchBackend` calls as OpenSearch. What it serves is one immutable
:class:`_View` of the store; a write builds the next view completely, appends the batch to the
store's durable log (under the store's lock, to the version the view is of), and only then swaps
the view in, so memory and disk cannot disagree: a refused or failed write changes neither.
The BM25 matrices of a view are built lazily on its first query.

Another process may switch the store to a new version (``shoprank index``) or append to its log
(``shoprank upsert``): reads look at the store's stamp (CURRENT and the log's length) at most
every ``check_every_s`` seconds and reload when it moved; writes always look first, under the
lock, so they land in the version that is served. A new version built with another embedding
model is not switched to: this process keeps serving the old one, refuses writes, and says to
restart it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from indexer.analysis import Synonyms, analyze, analyze_query, raw_tokens
from indexer.base import DocError, WriteReport
from indexer.embedded.reviews import EmbeddedReviewStore
from indexer.embedded.store import (
    EmbeddedSnapshot,
    EmbeddedStore,
    Stamp,
    check_vectors,
    delete_records,
    upsert_records,
)
from indexer.errors import BadInputError, IndexMismatchError
from indexer.manifest import Manifest
from indexer.product import Product, check_batch
from indexer.schema import (
    COMBINED_FIELD,
    COMBINED_SOURCES,
    DEFAULT_FIELD_BOOSTS,
    DEFAULT_SYNONYM_WEIGHT,
    NAMING_FIELDS,
    SEARCH_FIELDS,
    STRICT_FIELDS,
    text_fields,
)
from ranker.base import Filters, Scored
from ranker.retrieval.bm25 import BestFieldBM25, BM25Index, BM25Params

log = logging.getLogger(__name__)


def _analyze(p: Product) -> dict[str, list[str]]:
    fields = {f: analyze(v) for f, v in text_fields(p).items() if v}
    fields[COMBINED_FIELD] = [t for f in COMBINED_SOURCES for t in fields.get(f, ())]
    return fields


@dataclass
class _View:
    """One state of the index, never changed once served (its lazy indices aside)."""

    stamp: Stamp
    manifest: Manifest
    products: list[Product]
    vectors: np.ndarray
    terms: list[dict[str, list[str]]]
    ids: list[str] = field(init=False)
    pos: dict[str, int] = field(init=False)
    brand: np.ndarray = field(init=False)
    price: np.ndarray = field(init=False)
    stock: np.ndarray = field(init=False)
    bm25: BM25Index | None = None
    strict: BestFieldBM25 | None = None
    ean: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.ids = [p.id for p in self.products]
        self.pos = {pid: i for i, pid in enumerate(self.ids)}
        self.brand = np.asarray([p.brand.lower() for p in self.products], dtype=object)
        self.price = np.asarray(
            [np.nan if p.price is None else p.price for p in self.products], dtype=np.float64
        )
        self.stock = np.asarray(
            [-1 if p.in_stock is None else int(p.in_stock) for p in self.products], dtype=np.int8
        )

    @classmethod
    def of(cls, snap: EmbeddedSnapshot) -> _View:
        return cls(
            snap.stamp, snap.manifest, snap.products, snap.vectors, [_analyze(p) for p in snap.products]
        )

    def upserted(self, products: Sequence[Product], vectors: np.ndarray, stamp: Stamp) -> _View:
        """A new view with ``products`` added or replaced (ids unique within the batch)."""
        rows = list(self.products)
        terms = list(self.terms)
        pos = dict(self.pos)
        replaced: list[tuple[int, np.ndarray]] = []
        added: list[np.ndarray] = []
        for p, v in zip(products, vectors, strict=True):
            i = pos.get(p.id)
            if i is None:
                pos[p.id] = len(rows)
                rows.append(p)
                terms.append(_analyze(p))
                added.append(v)
            else:
                rows[i] = p
                terms[i] = _analyze(p)
                replaced.append((i, v))
        mat = self.vectors.copy() if replaced else self.vectors
        for i, v in replaced:
            mat[i] = v
        if added:
            mat = np.vstack([mat, np.vstack(added)]).astype(np.float32, copy=False)
        return _View(stamp, self.manifest, rows, mat, terms)

    def without(self, ids: Sequence[str], stamp: Stamp) -> _View:
        gone = set(ids)
        keep = [j for j, pid in enumerate(self.ids) if pid not in gone]
        return _View(
            stamp,
            self.manifest,
            [self.products[j] for j in keep],
            self.vectors[keep],
            [self.terms[j] for j in keep],
        )


def _fit(m: Manifest) -> tuple[str, int, int]:
    return m.model_id, m.dimension, m.analyzer_version


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
        check_every_s: float = 1.0,
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
        self.check_every_s = check_every_s
        self._write_lock = threading.Lock()  # writes and reloads, one at a time
        self._lazy_lock = threading.Lock()  # building a view's BM25 / EAN indices
        self._checked = time.monotonic()
        self._refused: str | None = None  # a newer version this process cannot serve
        snap = store.load()
        self._fit = _fit(snap.manifest)
        self._view = _View.of(snap)
        log.info("embedded backend: %d products, version %s", len(snap.products), snap.version)

    # -- state ------------------------------------------------------------------------------
    def reload(self) -> None:
        """(Re)load the live version from disk."""
        with self._write_lock:
            self._switch(self.store.load())

    def _switch(self, snap: EmbeddedSnapshot) -> _View:
        """Serve ``snap`` unless it was built for another model (caller holds the write lock)."""
        if _fit(snap.manifest) != self._fit:
            raise IndexMismatchError(
                f"the index in {self.store.root} was rebuilt ({snap.version}) with model "
                f"{snap.manifest.model_id!r} ({snap.manifest.dimension}-d, analyzer "
                f"{snap.manifest.analyzer_version}) while this service runs {self._fit[0]!r} "
                f"({self._fit[1]}-d, analyzer {self._fit[2]}); it still serves "
                f"{self._view.stamp.version} and refuses writes: restart it with the index's model"
            )
        if snap.version != self._view.stamp.version:
            log.info(
                "embedded backend: switched to version %s (%d products)", snap.version, len(snap.products)
            )
        self._refused = None
        self._view = _View.of(snap)
        return self._view

    def _current(self) -> _View:
        """The view to answer a read from, after a cheap look (at most every ``check_every_s``)
        for a newer state on disk that another process made."""
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            try:
                self._catch_up()
            except Exception:  # a read keeps serving what it has; the failure is logged
                log.warning("embedded backend: could not reload %s", self.store.root, exc_info=True)
        return self._view

    def _catch_up(self) -> None:
        disk = self.store.stamp()
        if disk is None or disk == self._view.stamp or disk.version == self._refused:
            return
        if not self._write_lock.acquire(blocking=False):
            return  # a write in this process is under way; it catches up itself
        try:
            with self.store.locked(shared=True):
                disk = self.store.stamp()
                if disk is not None and disk != self._view.stamp:
                    try:
                        self._switch(self.store.read(disk.version))
                    except IndexMismatchError as exc:  # another model, or damaged: say so once
                        if self._refused != disk.version:
                            log.error("embedded backend: not switching: %s", exc)
                        self._refused = disk.version
        finally:
            self._write_lock.release()

    def _fresh(self) -> _View:
        """The view of what is on disk now, for a write (caller holds both locks)."""
        version = self.store.require_version()  # NotFoundError saying how to build an index
        disk = Stamp(version, self.store.log_bytes(version))
        if disk != self._view.stamp:
            return self._switch(self.store.read(version))
        return self._view

    def _index(self, v: _View) -> BM25Index:
        if v.bm25 is None:
            with self._lazy_lock:
                if v.bm25 is None:
                    v.bm25 = BM25Index(v.terms, self.field_boosts, self.bm25_params)
        return v.bm25

    def _strict_index(self, v: _View) -> BestFieldBM25:
        if v.strict is None:
            with self._lazy_lock:
                if v.strict is None:
                    v.strict = BestFieldBM25(v.terms, STRICT_FIELDS, self.bm25_params)
        return v.strict

    @staticmethod
    def _mask(v: _View, filters: Filters) -> np.ndarray | None:
        if filters.empty:
            return None
        m = np.ones(len(v.products), dtype=bool)
        if filters.brands:
            m &= np.isin(v.brand, [b.lower() for b in filters.brands])
        with np.errstate(invalid="ignore"):
            if filters.price_min is not None:
                m &= v.price >= filters.price_min
            if filters.price_max is not None:
                m &= v.price <= filters.price_max
        if filters.in_stock is not None:
            m &= (v.stock == -1) | (v.stock == int(filters.in_stock))
        return m

    # -- SearchBackend ------------------------------------------------------------------------
    def _lexical_scores(
        self, v: _View, query: str, expansions: Sequence[tuple[str, float]] = ()
    ) -> np.ndarray:
        """BM25 of the query as typed, plus ``synonym_weight`` × BM25 of the synonym-expanded query,
        plus each expansion's weight × its BM25 (the OpenSearch backend sends the same clauses)."""
        plain = list(dict.fromkeys(analyze(query)))
        idx = self._index(v)
        scores = idx.scores(plain)
        if self.synonym_weight > 0:
            expanded = list(dict.fromkeys(analyze_query(query, self.synonyms)))
            if expanded != plain:
                scores = scores + self.synonym_weight * idx.scores(expanded)
            else:
                scores = scores * (1.0 + self.synonym_weight)
        for term, weight in expansions:
            extra = list(dict.fromkeys(analyze(term)))
            if extra and weight > 0:
                scores = scores + np.float32(weight) * idx.scores(extra)
        return scores

    def lexical(
        self, query: str, n: int, filters: Filters, expansions: Sequence[tuple[str, float]] = ()
    ) -> list[Scored]:
        v = self._current()
        scores = self._lexical_scores(v, query, expansions)
        ok = scores > 0
        mask = self._mask(v, filters)
        if mask is not None:
            ok &= mask
        return self._top(v, scores, ok, n)

    def strict_lexical(self, query: str, n: int, filters: Filters) -> list[Scored]:
        v = self._current()
        if not len(v.products):
            return []
        scores, ok = self._strict_index(v).scores(analyze(query))
        mask = self._mask(v, filters)
        if mask is not None:
            ok &= mask
        return self._top(v, scores, ok, n)

    def knn(self, vector: np.ndarray, n: int, filters: Filters) -> list[Scored]:
        v = self._current()
        if not len(v.products):
            return []
        sims = v.vectors @ np.asarray(vector, dtype=np.float32)
        mask = self._mask(v, filters)
        ok = np.ones(len(sims), dtype=bool) if mask is None else mask
        return self._top(v, sims, ok, n)

    def hybrid(
        self,
        query: str,
        vector: np.ndarray,
        n: int,
        filters: Filters,
        expansions: Sequence[tuple[str, float]] = (),
    ) -> tuple[list[Scored], list[Scored]]:
        return self.lexical(query, n, filters, expansions), self.knn(vector, n, filters)

    @staticmethod
    def _top(v: _View, scores: np.ndarray, ok: np.ndarray, n: int) -> list[Scored]:
        cand = np.flatnonzero(ok)
        if cand.size == 0:
            return []
        s = scores[cand]
        if cand.size > n:
            part = np.argpartition(-s, n - 1)[:n]
            cand, s = cand[part], s[part]
        ids = [v.ids[i] for i in cand]
        order = sorted(range(len(ids)), key=lambda j: (-float(s[j]), ids[j]))
        return [Scored(ids[j], float(s[j])) for j in order]

    def lexical_scores(
        self, query: str, ids: Sequence[str], expansions: Sequence[tuple[str, float]] = ()
    ) -> dict[str, float]:
        v = self._current()
        scores = self._lexical_scores(v, query, expansions)
        return {i: float(scores[v.pos[i]]) for i in ids if i in v.pos and scores[v.pos[i]] > 0}

    def ids_for_eans(self, eans: Sequence[str]) -> dict[str, str]:
        """EAN → product id for the EANs some product carries."""
        v = self._current()
        if v.ean is None:
            with self._lazy_lock:
                if v.ean is None:
                    by_ean: dict[str, str] = {}
                    for p in v.products:
                        for e in p.ean:
                            by_ean.setdefault(e, p.id)
                    v.ean = by_ean
        return {e: v.ean[e] for e in eans if e in v.ean}

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        v = self._current()
        return {i: v.vectors[v.pos[i]].copy() for i in ids if i in v.pos}

    def fetch(self, ids: Sequence[str]) -> dict[str, Product]:
        """Products by id, with their review aggregates (read from the review log) attached."""
        v = self._current()
        found = {i: v.products[v.pos[i]] for i in ids if i in v.pos}
        stats = self.reviews.stats(list(found))
        return {i: replace(p, reviews=stats[i]) if i in stats else p for i, p in found.items()}

    def count(self) -> int:
        return len(self._current().products)

    def generation(self) -> tuple[Stamp, tuple[int, int] | None]:
        """The state served now: the live version and its write log's length, and the review log's
        state (a fetch reads the products' review aggregates from it). It moves with every product
        write and every review, so caches keyed by it never serve an older state."""
        return (self._current().stamp, self.reviews.generation())

    def naming_documents(self) -> Iterator[tuple[list[list[str]], list[str], tuple[str, str]]]:
        """Every product's words: (each naming field's words before stemming, the other text
        fields' analyzed terms, (title, category) as written)."""
        v = self._current()
        for p, terms in zip(v.products, v.terms, strict=True):
            fields = text_fields(p)
            naming = [raw_tokens(fields[f]) for f in NAMING_FIELDS]
            other = [
                t for f, ts in terms.items() if f not in NAMING_FIELDS and f != COMBINED_FIELD for t in ts
            ]
            yield naming, other, (p.title, p.category)

    def manifest(self) -> Manifest | None:
        return self._current().manifest

    # -- writes: the next view is built whole, the batch made durable, then the view swapped ----
    def upsert(self, products: Sequence[Product], vectors: np.ndarray) -> WriteReport:
        t0 = time.perf_counter()
        check_batch(products)
        arr = np.asarray(vectors, dtype=np.float32)
        with self._write_lock, self.store.locked():
            view = self._fresh()
            check_vectors(products, arr, view.manifest.dimension)
            records = upsert_records(products, arr)
            stored = [Product.from_dict(r["product"]) for r in records]  # exactly what a reload reads
            pending = view.upserted(stored, arr, view.stamp)
            size = self.store.append(view.stamp.version, records) if records else view.stamp.log_bytes
            pending.stamp = Stamp(view.stamp.version, size)
            self._view = pending
        return WriteReport(indexed=len(products), target=view.stamp.version, seconds=time.perf_counter() - t0)

    def delete(self, ids: Sequence[str]) -> WriteReport:
        t0 = time.perf_counter()
        ids = list(dict.fromkeys(ids))
        with self._write_lock, self.store.locked():
            view = self._fresh()
            present = [i for i in ids if i in view.pos]
            errors = [DocError(i, "not found") for i in ids if i not in view.pos]
            if present:
                pending = view.without(present, view.stamp)
                size = self.store.append(view.stamp.version, delete_records(present))
                pending.stamp = Stamp(view.stamp.version, size)
                self._view = pending
        return WriteReport(
            deleted=len(present), errors=errors, target=view.stamp.version, seconds=time.perf_counter() - t0
        )
