"""What the embedded backend serves: one large base segment, plus a small delta of recent writes.

A write never rebuilds an index. The base segment (products, vectors, analyzed text, BM25 and
strict-leg indexes) stays as it was built; a write masks the base rows it replaces or deletes
(``dead``) and adds the product to the delta, which holds each product written since (its last
write). A delta row's BM25 contributions are computed once, when it is written, against the
base's statistics with the product counted in
(:meth:`~ranker.retrieval.bm25.BM25Index.document_scores`), so a write costs O(its own text)
plus O(delta) pointer copies. A write that leaves a base product's text, vector and EANs as they
were (a price or stock update) does not even do that: the base row keeps serving, with the new
record beside it (:class:`Patches`), so a shop streaming price updates never grows the delta.
A merge, run off the request path, folds the delta into a new base (exact statistics again);
the backend replays whatever was written while it ran. A :class:`View` is never changed once
served: a write makes the next one.

Rows of a view are numbered base first (``0 … len(base)-1``), then delta.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from indexer.analysis import analyze
from indexer.embedded.store import EmbeddedSnapshot, Stamp
from indexer.manifest import Manifest
from indexer.product import Product
from indexer.schema import COMBINED_FIELD, COMBINED_SOURCES, STRICT_FIELDS, text_fields
from ranker.base import Filters
from ranker.retrieval.ann import AnnParams, HnswIndex
from ranker.retrieval.bm25 import BestFieldBM25, BM25Index, BM25Params
from ranker.retrieval.tokens import Terms, TokenTable

# a filter that lets this share of the base through is searched in the graph (post-filtered);
# a more selective one exactly over the rows it allows (cheap, since they are few)
ANN_MIN_SHARE = 0.3
# this many patched base rows are folded into the base's records (O(catalog) copies, no analysis)
FOLD_PATCHES = 512


def analyze_product(p: Product) -> Terms:
    """The analyzed terms of each text field, and of the combined field."""
    fields = {f: analyze(v) for f, v in text_fields(p).items() if v}
    fields[COMBINED_FIELD] = [t for f in COMBINED_SOURCES for t in fields.get(f, ())]
    return fields


@dataclass(frozen=True)
class Scoring:
    """How segments are indexed: the field boosts of the BM25 leg and the BM25 parameters."""

    field_boosts: Mapping[str, float]
    params: BM25Params
    ann: AnnParams | None = None  # a base segment this large gets an HNSW graph (None: never)


@dataclass(frozen=True)
class Written:
    """One product write: an upsert (product, vector and its analyzed text) or a delete."""

    id: str
    product: Product | None = None
    vector: np.ndarray | None = None
    terms: Terms | None = None

    @classmethod
    def upsert(cls, product: Product, vector: np.ndarray) -> Written:
        return cls(product.id, product, np.asarray(vector, dtype=np.float32), analyze_product(product))


def _filter_mask(brand: np.ndarray, price: np.ndarray, stock: np.ndarray, filters: Filters) -> np.ndarray:
    m = np.ones(len(brand), dtype=bool)
    if filters.brands:
        m &= np.isin(brand, [b.lower() for b in filters.brands])
    with np.errstate(invalid="ignore"):
        if filters.price_min is not None:
            m &= price >= filters.price_min
        if filters.price_max is not None:
            m &= price <= filters.price_max
    if filters.in_stock is not None:
        m &= (stock == -1) | (stock == int(filters.in_stock))
    return m


def _price(p: Product) -> float:
    return np.nan if p.price is None else p.price


def _stock(p: Product) -> int:
    return -1 if p.in_stock is None else int(p.in_stock)


def _filter_columns(products: Sequence[Product]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What filters read of each product: lower-cased brand, price (NaN: none), stock (-1: unknown)."""
    brand = np.asarray([p.brand.lower() for p in products], dtype=object)
    price = np.asarray([_price(p) for p in products], dtype=np.float64)
    stock = np.asarray([_stock(p) for p in products], dtype=np.int8)
    return brand, price, stock


class _Rows:
    """Products with their vectors, and what filters and lookups need."""

    def __init__(self, products: Sequence[Product], vectors: np.ndarray):
        self.products = list(products)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.ids = [p.id for p in self.products]
        self.pos = {pid: i for i, pid in enumerate(self.ids)}
        self.brand, self.price, self.stock = _filter_columns(self.products)
        self.ean: dict[str, int] = {}
        for i, p in enumerate(self.products):
            for e in p.ean:
                self.ean.setdefault(e, i)

    def __len__(self) -> int:
        return len(self.products)

    def mask(self, filters: Filters) -> np.ndarray:
        return _filter_mask(self.brand, self.price, self.stock, filters)


class Segment(_Rows):
    """The base: its analyzed text (a :class:`TokenTable`), BM25 and strict-leg indexes built over
    all its rows; never changed once built."""

    def __init__(
        self,
        products: Sequence[Product],
        vectors: np.ndarray,
        tokens: TokenTable,
        scoring: Scoring,
        graphs: Path | None = None,
    ):
        super().__init__(products, vectors)
        self.tokens = tokens
        self.bm25 = BM25Index.of_tokens(tokens, scoring.field_boosts, scoring.params)
        self.strict = BestFieldBM25.of_tokens(tokens, STRICT_FIELDS, scoring.params)
        ann = scoring.ann
        self.ann: HnswIndex | None = None
        if ann is not None and len(self) >= ann.min_rows:  # from ``graphs`` when saved there
            self.ann = (
                HnswIndex(self.vectors, ann)
                if graphs is None
                else HnswIndex.cached(self.vectors, ann, graphs)
            )

    def bm25_scores(self, terms: Sequence[str]) -> np.ndarray:
        return self.bm25.scores(terms)

    def strict_scores(self, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.strict.scores(terms)

    def indexed_as(self, i: int, w: Written) -> bool:
        """Whether upsert ``w`` leaves row ``i`` indexed as it is: the same analyzed text, vector,
        brand and EANs (so only its record, price or stock say, differs)."""
        p = w.product
        return (
            p is not None
            and w.terms is not None
            and self.tokens.same(i, w.terms)
            and p.brand.lower() == self.brand[i]
            and tuple(p.ean) == tuple(self.products[i].ean)
            and w.vector is not None
            and np.array_equal(w.vector, self.vectors[i])
        )

    def with_records(self, records: Mapping[int, Product]) -> Segment:
        """The same indexes with the records of rows ``records`` replaced (each indexed as its
        row: see :meth:`indexed_as`): O(catalog) pointer and column copies, no analysis."""
        seg = copy.copy(self)
        seg.products = list(self.products)
        seg.price = self.price.copy()
        seg.stock = self.stock.copy()
        for i, p in records.items():
            seg.products[i] = p
            seg.price[i] = _price(p)
            seg.stock[i] = _stock(p)
        return seg


class Patches:
    """Base rows whose record a write replaced while leaving them indexed as they are (a price
    or stock update): the new records and the filter columns of those rows."""

    def __init__(self, records: Mapping[int, Product] | None = None):
        self.records = dict(records or {})
        self.rows = np.fromiter(self.records, dtype=np.intp, count=len(self.records))
        self.brand, self.price, self.stock = _filter_columns(list(self.records.values()))

    def __len__(self) -> int:
        return len(self.records)

    def apply(self, base_mask: np.ndarray, filters: Filters) -> np.ndarray:
        """``base_mask`` (the base's filter mask, a fresh array) with the patched rows' answers."""
        if self.records:
            base_mask[self.rows] = _filter_mask(self.brand, self.price, self.stock, filters)
        return base_mask


@dataclass(frozen=True)
class DeltaRow:
    """One product of the delta, its BM25 contributions computed against the base it was
    written on: ``lexical`` (term → summed over the boosted fields) and ``strict`` (term → its
    best field)."""

    product: Product
    vector: np.ndarray
    terms: Terms
    lexical: Mapping[str, float]
    strict: Mapping[str, float]

    @classmethod
    def of(cls, w: Written, base: Segment) -> DeltaRow:
        assert w.product is not None and w.vector is not None and w.terms is not None
        return cls(
            w.product,
            w.vector,
            w.terms,
            base.bm25.document_scores(w.terms),
            base.strict.document_scores(w.terms),
        )


class Delta(_Rows):
    """The products written since the base was built (each id's last write), scored row by row."""

    def __init__(self, rows: Sequence[DeltaRow], dimension: int):
        self.rows = tuple(rows)
        vectors = np.vstack([r.vector for r in rows]) if rows else np.zeros((0, dimension), np.float32)
        super().__init__([r.product for r in rows], vectors)
        self.terms = [r.terms for r in rows]

    def bm25_scores(self, terms: Sequence[str]) -> np.ndarray:
        return np.asarray([sum(r.lexical.get(t, 0.0) for t in terms) for r in self.rows], dtype=np.float32)

    def strict_scores(self, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        uniq = list(dict.fromkeys(terms))
        scores = np.zeros(len(self.rows), dtype=np.float64)
        match = np.full(len(self.rows), bool(uniq))
        for i, r in enumerate(self.rows):
            for t in uniq:
                v = r.strict.get(t)
                if v is None:
                    match[i] = False
                else:
                    scores[i] += v
        return scores, match


@dataclass
class View:
    """One state of the index: a base segment with the rows later writes replaced or deleted
    masked (``dead``), the new records of base rows whose indexing a write left as it was
    (``patches``), and the delta of the other writes. ``ranking`` moves with every write that can
    change a ranking: (the base it was built on, a count of such writes since); a write that
    changes only products' prices or stock leaves it (:func:`offer_only`)."""

    stamp: Stamp
    manifest: Manifest
    scoring: Scoring
    base: Segment
    dead: np.ndarray
    delta: Delta
    patches: Patches = field(default_factory=Patches)
    ranking: tuple[int, int] = (0, 0)
    _live: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, snap: EmbeddedSnapshot, scoring: Scoring, graphs: Path | None = None) -> View:
        """The view of a snapshot read from disk: everything in the base, indexes built (its
        vector graph, if it gets one, saved in and loaded from ``graphs``)."""
        tokens = TokenTable.of(analyze_product(p) for p in snap.products)
        base = Segment(snap.products, snap.vectors, tokens, scoring, graphs)
        return cls.based_on(base, snap.stamp, snap.manifest, scoring)

    @classmethod
    def based_on(cls, base: Segment, stamp: Stamp, manifest: Manifest, scoring: Scoring) -> View:
        empty = Delta([], manifest.dimension)
        return cls(stamp, manifest, scoring, base, np.zeros(len(base), dtype=bool), empty)

    # -- rows -------------------------------------------------------------------------------
    @property
    def live(self) -> np.ndarray:
        """Which rows are served (base rows not masked, every delta row)."""
        if self._live is None:
            self._live = np.concatenate([~self.dead, np.ones(len(self.delta), dtype=bool)])
        return self._live

    @property
    def pending(self) -> int:
        """How much a merge would fold in: delta rows plus masked base rows."""
        return len(self.delta) + int(self.dead.sum())

    def __len__(self) -> int:
        return len(self.base) - int(self.dead.sum()) + len(self.delta)

    def row(self, pid: str) -> int | None:
        """The live row of product ``pid``, or None when it is not served."""
        j = self.delta.pos.get(pid)
        if j is not None:
            return len(self.base) + j
        i = self.base.pos.get(pid)
        return None if i is None or self.dead[i] else i

    def _at(self, row: int) -> tuple[_Rows, int]:
        b = len(self.base)
        return (self.base, row) if row < b else (self.delta, row - b)

    def id_at(self, row: int) -> str:
        seg, i = self._at(row)
        return seg.ids[i]

    def product_at(self, row: int) -> Product:
        seg, i = self._at(row)
        if seg is self.base and self.patches.records:
            return self.patches.records.get(i) or seg.products[i]
        return seg.products[i]

    def vector_at(self, row: int) -> np.ndarray:
        seg, i = self._at(row)
        return seg.vectors[i]

    def row_of_ean(self, ean: str) -> int | None:
        j = self.delta.ean.get(ean)
        if j is not None:
            return len(self.base) + j
        i = self.base.ean.get(ean)
        return None if i is None or self.dead[i] else i

    def items(self) -> Iterator[tuple[Product, np.ndarray, Terms]]:
        """Every served product with its vector and analyzed text, base rows first."""
        patched = self.patches.records
        for i in np.flatnonzero(~self.dead).tolist():
            yield patched.get(i) or self.base.products[i], self.base.vectors[i], self.base.tokens.terms(i)
        yield from zip(self.delta.products, self.delta.vectors, self.delta.terms, strict=True)

    # -- scores over every row --------------------------------------------------------------
    def both(self, base: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return np.concatenate([base, delta]) if len(self.delta) else base

    def mask(self, filters: Filters) -> np.ndarray:
        """Rows that are served and pass ``filters``."""
        if filters.empty:
            return self.live
        base = self.patches.apply(self.base.mask(filters), filters)
        return self.live & self.both(base, self.delta.mask(filters))

    def bm25(self, terms: Sequence[str]) -> np.ndarray:
        if not len(self.delta):
            return self.base.bm25_scores(terms)
        return self.both(self.base.bm25_scores(terms), self.delta.bm25_scores(terms))

    def strict(self, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        s0, m0 = self.base.strict_scores(terms)
        if not len(self.delta):
            return s0, m0
        s1, m1 = self.delta.strict_scores(terms)
        return np.concatenate([s0, s1]), np.concatenate([m0, m1])

    def nearest(self, vector: np.ndarray, n: int, filters: Filters) -> tuple[np.ndarray, np.ndarray]:
        """Candidate rows and their cosine, among them the ``n`` nearest served rows that pass
        ``filters``: every such row (exact), or with a graph on the base and a filter that lets
        at least :data:`ANN_MIN_SHARE` of it through, the graph's nearest (over-fetched by the
        filter's selectivity and post-filtered; exact when too few pass) plus the delta's rows."""
        q = np.asarray(vector, dtype=np.float32)
        mask = self.mask(filters)
        ann, b = self.base.ann, len(self.base)
        if ann is None:
            rows = np.flatnonzero(mask)
            return rows, self.similarities(q)[rows]
        base_mask = mask[:b]
        allowed = int(np.count_nonzero(base_mask))
        rows_b: np.ndarray | None = None
        if allowed and allowed >= ANN_MIN_SHARE * b:
            found, _ = ann.search(q, int(np.ceil(n * b / allowed * 1.2)))
            keep = base_mask[found]
            if np.count_nonzero(keep) >= min(n, allowed):
                rows_b = found[keep]
        if rows_b is None:
            rows_b = np.flatnonzero(base_mask)
        sims_b = self.base.vectors[rows_b] @ q  # the exact cosine, whichever found the rows
        rows_d = np.flatnonzero(mask[b:])
        if not rows_d.size:
            return rows_b, sims_b
        return np.concatenate([rows_b, rows_d + b]), np.concatenate([sims_b, self.delta.vectors[rows_d] @ q])

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        q = np.asarray(vector, dtype=np.float32)
        return self.both(self.base.vectors @ q, self.delta.vectors @ q)

    # -- the next views ---------------------------------------------------------------------
    def written(self, writes: Sequence[Written], stamp: Stamp) -> View:
        """The view after ``writes`` (in order; each id's last write wins). An upsert that leaves
        its base row indexed as it is patches that row's record; any other write masks the base
        row and puts an upsert in the delta, scored against the base once. O(the writes' text +
        delta + patches), not O(catalog)."""
        base, dead = self.base, self.dead.copy()
        patched = dict(self.patches.records)
        rows = dict(zip(self.delta.ids, self.delta.rows, strict=True))
        ranked = not all(self.offer_only(w) for w in writes)
        for w in writes:
            rows.pop(w.id, None)
            i = base.pos.get(w.id)
            if i is not None:
                if w.product is not None and base.indexed_as(i, w):
                    dead[i] = False  # served by its base row again (were its text changed before)
                    patched[i] = w.product
                    continue
                dead[i] = True
                patched.pop(i, None)
            if w.product is not None:
                rows[w.id] = DeltaRow.of(w, base)
        if len(patched) >= FOLD_PATCHES:
            base, patched = base.with_records(patched), {}
        delta = Delta(list(rows.values()), self.manifest.dimension)
        ranking = (self.ranking[0], self.ranking[1] + ranked)
        return View(stamp, self.manifest, self.scoring, base, dead, delta, Patches(patched), ranking)

    def offer_only(self, w: Written) -> bool:
        """Whether upsert ``w`` changes only its served product's price and stock (nothing a
        ranking reads but a price filter or preference)."""
        row = self.row(w.id)
        if w.product is None or row is None or w.vector is None:
            return False
        old, new = self.product_at(row), w.product
        return replace(old, price=new.price, in_stock=new.in_stock) == new and np.array_equal(
            w.vector, self.vector_at(row)
        )

    def merged(self) -> View:
        """The same state with every served row in a new base (the delta folded in, statistics
        exact again). O(catalog): run it off the request path."""
        keep = np.flatnonzero(~self.dead)
        patched = self.patches.records
        products = [patched.get(i) or self.base.products[i] for i in keep.tolist()] + self.delta.products
        vectors = np.concatenate([self.base.vectors[keep], self.delta.vectors])
        tokens = self.base.tokens.take(keep).extended(self.delta.terms).compacted()
        base = Segment(products, vectors, tokens, self.scoring)
        return View.based_on(base, self.stamp, self.manifest, self.scoring)
