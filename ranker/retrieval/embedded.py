"""The in-process search backend (single-machine default): BM25 + exact cosine search in memory.

It reads an :class:`~indexer.embedded.store.EmbeddedStore` folder and answers the same
:class:`~ranker.base.SearchBackend` calls as OpenSearch. What it serves is one immutable
:class:`~ranker.retrieval.segments.View` of the store, its indexes built before it is served.
A write makes the next view (the base segment kept, only the small delta segment rebuilt),
appends the batch to the store's durable log (under the store's lock, to the version the view
is of), and only then swaps the view in, so memory and disk cannot disagree: a refused or failed
write changes neither, and no read waits for an index build. When the delta has grown, a
background merge folds it into a new base.

Another process may switch the store to a new version (``shoprank index``) or append to its log
(``shoprank upsert``, or another worker): reads look at the store's stamp (CURRENT and the log's
length) at most every ``check_every_s`` seconds, in a background thread; appended writes are
read from the log's tail and applied like this process's own, a new version is loaded whole. Writes always look first,
under the lock, so they land in the version that is served. A new version built with another
embedding model is not switched to: this process keeps serving the old one, refuses writes, and
says to restart it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

import numpy as np

from indexer.analysis import Synonyms, analyze, analyze_query, raw_tokens
from indexer.base import DocError, WriteReport
from indexer.carry import Write
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
    DEFAULT_FIELD_BOOSTS,
    DEFAULT_SYNONYM_WEIGHT,
    NAMING_FIELDS,
    SEARCH_FIELDS,
    text_fields,
)
from ranker.base import Filters, Scored
from ranker.retrieval.ann import DEFAULT_ANN, AnnParams
from ranker.retrieval.bm25 import BM25Params
from ranker.retrieval.segments import Scoring, View, Written

log = logging.getLogger(__name__)


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
        merge_min: int = 256,
        merge_fraction: float = 0.02,
        ann: AnnParams | None = DEFAULT_ANN,
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
        self.scoring = Scoring(self.field_boosts, self.bm25_params, ann)
        self.merge_min = merge_min
        self.merge_fraction = merge_fraction
        self._write_lock = threading.Lock()  # writes, reloads and a merge's swap, one at a time
        self._merging = threading.Lock()  # held by the one merge that runs
        self._replay: list[Written] | None = None  # while a merge runs: the writes it must replay
        self._following = threading.Lock()  # held by the one background look at the disk
        self._checked = time.monotonic()
        self._refused: str | None = None  # a newer version this process cannot serve
        snap = store.load()
        self._fit = _fit(snap.manifest)
        self._bases = itertools.count(1)  # each base built gets the next: a ranking state's first part
        self._view = self._new_base(View.of(snap, self.scoring, self.store.derived_dir(snap.version)))
        log.info("embedded backend: %d products, version %s", len(snap.products), snap.version)

    # -- state ------------------------------------------------------------------------------
    def reload(self) -> None:
        """(Re)load the live version from disk."""
        with self._write_lock:
            self._switch(self.store.load())

    def _switch(self, snap: EmbeddedSnapshot) -> View:
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
        self._replay = None  # a merge under way was of the old state: it gives up
        self._view = self._new_base(View.of(snap, self.scoring, self.store.derived_dir(snap.version)))
        return self._view

    def _new_base(self, view: View) -> View:
        view.ranking = (next(self._bases), 0)
        return view

    def _serve(self, view: View, writes: list[Written]) -> View:
        """Serve ``view``, the served one after ``writes`` (caller holds the write lock); a merge
        under way will replay them onto its new base."""
        if self._replay is not None:
            self._replay.extend(writes)
        self._view = view
        return view

    def _follow(self, disk: Stamp) -> View:
        """Serve what is on disk at ``disk`` (caller holds the write lock and the store's lock):
        the writes another process appended to the served version's log are applied like this
        process's own (O(appended)); another version is loaded whole."""
        v = self._view
        if disk == v.stamp:
            return v
        if disk.version == v.stamp.version and disk.log_bytes > v.stamp.log_bytes:
            writes = self.store.writes_since(disk.version, v.stamp.log_bytes)
            applied = [_written(w) for w in writes]
            self._maybe_merge(self._serve(v.written(applied, disk), applied))
            return self._view
        return self._switch(self.store.read(disk.version))

    def _current(self) -> View:
        """The view to answer a read from. At most every ``check_every_s`` a read also starts a
        look for a newer state on disk that another process made, in a background thread, so
        no read waits for another worker's writes to be applied (``check_every_s = 0``: in the
        read itself, which then sees every write on disk)."""
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            if self.check_every_s <= 0:
                self._catch_up_logged()
            elif self._following.acquire(blocking=False):
                threading.Thread(
                    target=self._follow_then_release, name="shoprank-follow", daemon=True
                ).start()
        return self._view

    def _follow_then_release(self) -> None:
        try:
            self._catch_up_logged()
        finally:
            self._following.release()

    def _catch_up_logged(self) -> None:
        try:
            self._catch_up()
        except Exception:  # a read keeps serving what it has; the failure is logged
            log.warning("embedded backend: could not reload %s", self.store.root, exc_info=True)

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
                        self._follow(disk)
                    except IndexMismatchError as exc:  # another model, or damaged: say so once
                        if self._refused != disk.version:
                            log.error("embedded backend: not switching: %s", exc)
                        self._refused = disk.version
        finally:
            self._write_lock.release()

    def _fresh(self) -> View:
        """The view of what is on disk now, for a write (caller holds both locks)."""
        version = self.store.require_version()  # NotFoundError saying how to build an index
        return self._follow(Stamp(version, self.store.log_bytes(version)))

    # -- merging the delta into the base, off the request path ------------------------------
    def _maybe_merge(self, v: View) -> None:
        """Start a background merge when the delta has grown past ``merge_min`` rows and
        ``merge_fraction`` of the base (caller holds the write lock)."""
        if v.pending < max(self.merge_min, self.merge_fraction * len(v.base)):
            return
        if not self._merging.acquire(blocking=False):
            return  # one runs; it replays what comes in meanwhile
        threading.Thread(target=self._merge_then_release, name="shoprank-merge", daemon=True).start()

    def _merge_then_release(self) -> None:
        try:
            self._merge()
        except Exception:  # the delta keeps serving; the next write tries again
            log.exception("embedded backend: merge failed")
        finally:
            self._merging.release()

    def merge(self) -> None:
        """Fold the delta into a new base now, in this thread (reads go on meanwhile)."""
        with self._merging:
            self._merge()

    def _merge(self) -> None:
        t0 = time.perf_counter()
        with self._write_lock:
            v0 = self._view
            if not v0.pending:
                return
            self._replay = []
        merged = v0.merged()  # the O(catalog) part, outside every lock
        with self._write_lock:
            replay, self._replay = self._replay, None
            if replay is None:
                return  # another version was switched to meanwhile
            self._view = self._new_base(merged.written(replay, self._view.stamp))
        log.info(
            "embedded backend: merged %d pending rows into a base of %d in %.2f s",
            v0.pending,
            len(merged.base),
            time.perf_counter() - t0,
        )

    # -- SearchBackend ------------------------------------------------------------------------
    def _lexical_scores(
        self, v: View, query: str, expansions: Sequence[tuple[str, float]] = ()
    ) -> np.ndarray:
        """BM25 of the query as typed, plus ``synonym_weight`` × BM25 of the synonym-expanded query,
        plus each expansion's weight × its BM25 (the OpenSearch backend sends the same clauses)."""
        plain = list(dict.fromkeys(analyze(query)))
        scores = v.bm25(plain)
        if self.synonym_weight > 0:
            expanded = list(dict.fromkeys(analyze_query(query, self.synonyms)))
            if expanded != plain:
                scores = scores + self.synonym_weight * v.bm25(expanded)
            else:
                scores = scores * (1.0 + self.synonym_weight)
        for term, weight in expansions:
            extra = list(dict.fromkeys(analyze(term)))
            if extra and weight > 0:
                scores = scores + np.float32(weight) * v.bm25(extra)
        return scores

    def lexical(
        self, query: str, n: int, filters: Filters, expansions: Sequence[tuple[str, float]] = ()
    ) -> list[Scored]:
        v = self._current()
        scores = self._lexical_scores(v, query, expansions)
        return self._top(v, scores, (scores > 0) & v.mask(filters), n)

    def strict_lexical(self, query: str, n: int, filters: Filters) -> list[Scored]:
        v = self._current()
        if not len(v):
            return []
        scores, ok = v.strict(analyze(query))
        return self._top(v, scores, ok & v.mask(filters), n)

    def knn(self, vector: np.ndarray, n: int, filters: Filters) -> list[Scored]:
        v = self._current()
        if not len(v):
            return []
        rows, sims = v.nearest(vector, n, filters)
        return self._top_of(v, rows, sims, n)

    def hybrid(
        self,
        query: str,
        vector: np.ndarray,
        n: int,
        filters: Filters,
        expansions: Sequence[tuple[str, float]] = (),
    ) -> tuple[list[Scored], list[Scored]]:
        return self.lexical(query, n, filters, expansions), self.knn(vector, n, filters)

    @classmethod
    def _top(cls, v: View, scores: np.ndarray, ok: np.ndarray, n: int) -> list[Scored]:
        cand = np.flatnonzero(ok)
        return cls._top_of(v, cand, scores[cand], n)

    @staticmethod
    def _top_of(v: View, cand: np.ndarray, s: np.ndarray, n: int) -> list[Scored]:
        """The ``n`` best of rows ``cand`` scored ``s``."""
        if cand.size == 0:
            return []
        if cand.size > n:
            # the n best, ties at the cut broken by id (not by row order, which writes change)
            kth = s[np.argpartition(-s, n - 1)[n - 1]]
            keep = s >= kth
            cand, s = cand[keep], s[keep]
        ids = [v.id_at(i) for i in cand.tolist()]
        order = sorted(range(len(ids)), key=lambda j: (-float(s[j]), ids[j]))[:n]
        return [Scored(ids[j], float(s[j])) for j in order]

    def lexical_scores(
        self, query: str, ids: Sequence[str], expansions: Sequence[tuple[str, float]] = ()
    ) -> dict[str, float]:
        v = self._current()
        scores = self._lexical_scores(v, query, expansions)
        rows = {i: r for i in ids if (r := v.row(i)) is not None}
        return {i: float(scores[r]) for i, r in rows.items() if scores[r] > 0}

    def ids_for_eans(self, eans: Sequence[str]) -> dict[str, str]:
        """EAN → product id for the EANs some product carries."""
        v = self._current()
        rows = {e: r for e in eans if (r := v.row_of_ean(e)) is not None}
        return {e: v.id_at(r) for e, r in rows.items()}

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        v = self._current()
        return {i: v.vector_at(r).copy() for i in ids if (r := v.row(i)) is not None}

    def fetch(self, ids: Sequence[str]) -> dict[str, Product]:
        """Products by id, with their review aggregates (read from the review log) attached."""
        v = self._current()
        found = {i: v.product_at(r) for i in ids if (r := v.row(i)) is not None}
        stats = self.reviews.stats(list(found))
        return {i: replace(p, reviews=stats[i]) if i in stats else p for i, p in found.items()}

    def count(self) -> int:
        return len(self._current())

    def generation(self) -> tuple[Stamp, tuple[int, int] | None]:
        """The state served now: the live version and its write log's length, and the review log's
        state (a fetch reads the products' review aggregates from it). It moves with every product
        write and every review, so caches keyed by it never serve an older state."""
        return (self._current().stamp, self.reviews.generation())

    def ranking_generation(self) -> tuple[tuple[int, int], tuple[int, int] | None]:
        """Like :meth:`generation`, but left where it was by writes that change only prices or
        stock (:meth:`View.offer_only`): what a cached ranking that reads neither depends on."""
        return (self._current().ranking, self.reviews.generation())

    def naming_documents(self) -> Iterator[tuple[list[list[str]], list[str], tuple[str, str]]]:
        """Every product's words: (each naming field's words before stemming, the other text
        fields' analyzed terms, (title, category) as written)."""
        for p, _, terms in self._current().items():
            fields = text_fields(p)
            naming = [raw_tokens(fields[f]) for f in NAMING_FIELDS]
            other = [
                t for f, ts in terms.items() if f not in NAMING_FIELDS and f != COMBINED_FIELD for t in ts
            ]
            yield naming, other, (p.title, p.category)

    def manifest(self) -> Manifest | None:
        return self._current().manifest

    # -- writes: the next view is built (the delta only), the batch made durable, then swapped --
    def upsert(self, products: Sequence[Product], vectors: np.ndarray) -> WriteReport:
        t0 = time.perf_counter()
        check_batch(products)
        arr = np.asarray(vectors, dtype=np.float32)
        with self._write_lock, self.store.locked():
            view = self._fresh()
            check_vectors(products, arr, view.manifest.dimension)
            records = upsert_records(products, arr)
            stored = [Product.from_dict(r["product"]) for r in records]  # exactly what a reload reads
            writes = [Written.upsert(p, a) for p, a in zip(stored, arr, strict=True)]
            pending = view.written(writes, view.stamp)  # built before the batch is made durable
            size = self.store.append(view.stamp.version, records) if records else view.stamp.log_bytes
            pending.stamp = Stamp(view.stamp.version, size)
            self._maybe_merge(self._serve(pending, writes))
        return WriteReport(indexed=len(products), target=view.stamp.version, seconds=time.perf_counter() - t0)

    def delete(self, ids: Sequence[str]) -> WriteReport:
        t0 = time.perf_counter()
        ids = list(dict.fromkeys(ids))
        with self._write_lock, self.store.locked():
            view = self._fresh()
            present = [i for i in ids if view.row(i) is not None]
            errors = [DocError(i, "not found") for i in ids if view.row(i) is None]
            if present:
                writes = [Written(i) for i in present]
                pending = view.written(writes, view.stamp)
                size = self.store.append(view.stamp.version, delete_records(present))
                pending.stamp = Stamp(view.stamp.version, size)
                self._maybe_merge(self._serve(pending, writes))
        return WriteReport(
            deleted=len(present), errors=errors, target=view.stamp.version, seconds=time.perf_counter() - t0
        )


def _written(w: Write) -> Written:
    """A write read from the log, as the view applies it."""
    if w.product is None or w.vector is None:
        return Written(w.id)
    return Written.upsert(w.product, w.vector)
