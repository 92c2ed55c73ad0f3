"""Everything the service keeps between requests, built once from settings in the app's lifespan.

Routes stay thin: they translate HTTP to these methods and back. Writes go durable-first (the
index store, the review log, the event log) and then update the in-memory views (the embedded
backend, the event model), so an accepted write is never lost and is visible to the next request.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from indexer.base import WriteReport
from indexer.embedding.embedders import Embedder, EmbeddingCache, embed_texts
from indexer.errors import BadInputError, FeatureUnavailableError, IndexMismatchError, NotFoundError
from indexer.events import (
    MAX_CLOCK_SKEW_S,
    Event,
    EventStore,
    EventWriteReport,
    FollowedEvents,
    QueryRecord,
    client_hash,
    resolve_products,
)
from indexer.pipeline import check_compatible
from indexer.product import Product, check_batch
from indexer.reviews import Review, ReviewStore
from plugin_api.backends import (
    embedder_from,
    embedding_cache,
    factory,
    pipeline_parts,
    query_embedder_from,
    retrieval_config,
    review_prior,
    vocabulary,
)
from plugin_api.http.result_cache import Cached, ResultCache, reads_offers, request_key
from plugin_api.http.schemas import API_PIPELINES
from plugin_api.settings import Settings
from ranker.base import (
    EanLookup,
    Hit,
    Reranker,
    SearchBackend,
    Searcher,
    SearchOptions,
    SearchRequest,
    SearchResult,
)
from ranker.lazy import Once
from ranker.query.searcher import UnderstandingSearcher
from ranker.query.suggest import Suggestion
from ranker.query.vocabulary import Vocabulary
from ranker.ranking.full import FullPipeline
from ranker.ranking.mmr import mmr
from ranker.ranking.pipelines import build_pipeline
from ranker.recommend.recommender import Recommender, user_affinity
from ranker.retrieval.retriever import Retriever
from ranker.signals.personalization import EventModel, PersonalizationConfig
from ranker.signals.review_ingest import IngestReport, ingest_reviews
from ranker.signals.sentiment import SentimentModel

log = logging.getLogger(__name__)


class _QueryLogState:
    """Logs the ubi_queries store going bad and coming back once each, not once per search."""

    def __init__(self) -> None:
        self.down = False
        self.lost = 0

    def failed(self, exc: Exception) -> None:
        self.lost += 1
        if not self.down:
            self.down = True
            log.warning(
                "ubi_queries records are not being stored (%s: %s); searches still answer",
                type(exc).__name__,
                exc,
            )

    def ok(self) -> None:
        if self.down:
            self.down = False
            log.warning("ubi_queries records are stored again (%d searches went unrecorded)", self.lost)
            self.lost = 0


def _shown(query: QueryRecord | None, client_id: str, product_id: str | None) -> bool:
    """The search ``query`` was this shopper's and showed them this product."""
    return (
        query is not None
        and product_id is not None
        and query.client_id == client_id
        and product_id in query.object_ids
    )


class ProductWriter(Protocol):
    def upsert(self, products: Sequence[Product], vectors: np.ndarray) -> WriteReport: ...

    def delete(self, ids: Sequence[str]) -> WriteReport: ...


@dataclass
class Services:
    settings: Settings
    backend: SearchBackend
    store: ProductWriter  # where product writes go (the embedded backend itself, or OpenSearch)
    embedder: Embedder
    retriever: Retriever
    searchers: Mapping[str, Searcher]  # what ``pipeline=`` may name, built from the registry
    reviews: ReviewStore
    events: EventStore
    event_model: EventModel
    recommender: Recommender
    sentiment: Once[SentimentModel] | None = None
    reranker: Reranker | None = None
    started: float = field(default_factory=time.time)
    last_expiry: float = 0.0
    last_sync: float = 0.0
    query_log: _QueryLogState = field(default_factory=lambda: _QueryLogState())
    vector_cache: EmbeddingCache | None = None  # product writes' embedding cache
    vocabulary: Vocabulary | None = None  # query understanding and suggestions (None: switched off)
    last_vocabulary: float = 0.0
    clock: Callable[[], float] = time.time  # the wall clock event expiry reads (tests pass their own)
    where: str = "the index"  # the live index, as errors name it
    last_index_check: float = field(default_factory=time.monotonic)  # build_services just checked
    index_mismatch: IndexMismatchError | None = None  # the live index no longer fits the model
    results: ResultCache = field(default_factory=lambda: ResultCache(0))  # anonymous searches' answers

    # -- search ---------------------------------------------------------------------------------
    def search(
        self,
        req: SearchRequest,
        opts: SearchOptions,
        *,
        client_id: str | None,
        pipeline: str,
        shown: tuple[int, int] = (0, 100),
    ) -> tuple[SearchResult, str]:
        """Ranked results and the query id the storefront attributes its events to; the query
        record keeps the ids of the page the response shows (``shown`` = start, size), which
        is what an untrusted click on this query id is checked against."""
        self.check_index()
        t = time.perf_counter()
        key, records = self._result_key(pipeline, req, opts)
        cached = self.results.get(key) if key is not None else None
        if cached is not None and (cached.records is None or cached.records == records):
            result = replace(
                self._as_now(cached.result),
                timings_ms={"result_cache": round((time.perf_counter() - t) * 1000.0, 3)},
            )
        else:
            result = self.searchers[pipeline].search(req, opts)
            if key is not None:
                self.results.put(key, Cached(result, records if reads_offers(req, result) else None))
        query_id = str(uuid.uuid4())
        start, size = shown
        record = QueryRecord(
            query_id,
            client_id or "anonymous",
            req.query,
            time.time(),
            tuple(h.id for h in result.hits[start : start + size]),
        )
        try:
            self.events.add([], [record])
        except Exception as exc:  # a search must not fail because its UBI query record could not be kept
            self.query_log.failed(exc)
        else:
            self.query_log.ok()
        return result, query_id

    def _result_key(
        self, pipeline: str, req: SearchRequest, opts: SearchOptions
    ) -> tuple[Hashable | None, Hashable]:
        """The result cache's key (result_cache.py): the request with the index's ranking
        generation (or its generation, when the backend has no ranking one), the event epoch and
        the vocabulary's generation, as the cache adopts them (at most every
        ``result_cache_refresh_s``), and the records' state as adopted; key None (not cached)
        for personal requests and for a backend that cannot say when it changed (OpenSearch:
        other processes write)."""
        if self.results.size == 0:
            return None, None
        generation = getattr(self.backend, "generation", None)
        request = request_key(pipeline, req, opts)
        if request is None or not callable(generation):
            return None, None
        ranking = getattr(self.backend, "ranking_generation", generation)
        vocabulary = self.vocabulary.generation if self.vocabulary is not None else -1
        state = self.results.state((ranking(), self.event_model.events_seen, vocabulary))
        return (request, state), self.results.records(generation())

    def _as_now(self, result: SearchResult) -> SearchResult:
        """A cached result with each product's record as served now (its price and stock may
        have moved since; a product deleted since keeps its cached record until the state the
        cache keys on moves)."""
        ids = [h.id for h in result.hits if h.product is not None]
        if not ids:
            return result
        now = self.backend.fetch(ids)
        return replace(
            result,
            hits=[
                replace(h, product=now.get(h.id, h.product)) if h.product is not None else h
                for h in result.hits
            ],
        )

    def suggest(self, query: str, k: int) -> list[Suggestion]:
        """Completions of what the shopper is typing (none when query understanding is off)."""
        if self.vocabulary is None:
            return []
        return self.vocabulary.suggester.suggest(query, k)

    def refresh_vocabulary(self) -> bool:
        """Rebuild the vocabulary from the live index and query log, at most every
        ``vocabulary_refresh_s`` (called by the app's scheduler) when the index or the query log
        moved; True when it did."""
        now = self.clock()
        if self.vocabulary is None or now - self.last_vocabulary < self.settings.vocabulary_refresh_s:
            return False
        self.last_vocabulary = now
        return self.vocabulary.refresh()

    def personal(self, client_id: str, hits: list[Hit]) -> Mapping[str, float]:
        self.sync_events()
        return user_affinity(self.event_model, self.backend, client_id, hits)

    def check_index(self, *, fresh: bool = False) -> None:
        """OpenSearch: once the alias points at an index built for another model (``shoprank
        index`` run with other settings while this service runs), refuse searches and product
        writes with the reason (503) until it fits again: query vectors of one model against
        another's would rank at random, and written vectors would mix two models in one index.
        The manifest is re-read at most every ``index_check_s`` (``fresh``: now, before a write).
        The embedded backend guards its own switches and keeps serving the version it has."""
        if self.settings.backend != "opensearch":
            return
        now = time.monotonic()
        if not fresh and now - self.last_index_check < self.settings.index_check_s:
            if self.index_mismatch is not None:
                raise self.index_mismatch
            return
        self.last_index_check = now
        try:
            check_compatible(self.backend.manifest(), self.embedder, self.where)
        except IndexMismatchError as exc:
            if self.index_mismatch is None or str(self.index_mismatch) != str(exc):
                log.error("refusing searches and product writes: %s", exc)
            self.index_mismatch = exc
            raise
        if self.index_mismatch is not None:
            log.warning("%s fits the model again: serving", self.where)
            self.index_mismatch = None

    # -- writes ---------------------------------------------------------------------------------
    def expire_events(self) -> int:
        """Delete events older than the retention time, at most once per
        ``event_expiry_every_s`` (called after event writes and by the app's scheduler)."""
        ttl = self.settings.event_ttl_days * 86400.0
        now = self.clock()
        if ttl <= 0 or now - self.last_expiry < self.settings.event_expiry_every_s:
            return 0
        self.last_expiry = now
        gone = self.events.expire(now - ttl, after=now + MAX_CLOCK_SKEW_S)
        if gone:
            log.info("expired %d events older than %s days", gone, self.settings.event_ttl_days)
        return gone

    def sync_events(self, *, overlap_s: float = 300.0) -> int:
        """Fold in the events other processes stored: on OpenSearch, the window since the last
        sync (at most every ``event_sync_s``; overlapping reads are harmless, the event model counts
        each id once); on the embedded backend, what the shared logs gained (at most every
        ``event_follow_s``), forgetting the shoppers another process erased. Returns how many
        events were new."""
        shared = isinstance(self.events, FollowedEvents)
        every = self.settings.event_follow_s if shared else self.settings.event_sync_s
        if self.settings.backend != "opensearch" and not shared:
            return 0
        now = time.time()
        if now - self.last_sync < every:
            return 0
        since, self.last_sync = self.last_sync - overlap_s, now
        if shared:
            assert isinstance(self.events, FollowedEvents)
            pulled = self.events.pull()
            if pulled.erased:
                gone = [c for c in self.event_model.client_ids() if client_hash(c) in pulled.erased]
                for client in gone:
                    self.event_model.forget_client(client)
                log.info("forgot %d shopper(s) another process erased", len(gone))
            return self.event_model.add(pulled.events)
        return self.event_model.add(self.events.events(since=since))

    def add_events(self, events: Sequence[Event], *, trusted: bool = True) -> EventWriteReport:
        """Resolve, verify and store events. Untrusted (browser) events are dated no later than
        now and marked verified only when their query_id's search showed that shopper the product
        (see ranker/signals/influence.py: unverified browser events never move shared signals)."""
        eans = [e.object_id for e in events if e.object_id and (e.object_id_field or "").lower() != "id"]
        by_ean = self.backend.ids_for_eans(eans) if isinstance(self.backend, EanLookup) and eans else {}
        direct = list({e.object_id for e in events if e.object_id})
        known = set(self.backend.fetch(direct)) if direct else set()
        resolved = resolve_products(events, by_ean, known)
        now = time.time()
        if not trusted:
            qids = sorted({e.query_id for e in resolved if e.query_id and e.product_id})
            shown = self.events.queries(qids) if qids else {}
            resolved = [
                replace(
                    e,
                    trusted=False,
                    received=now,
                    verified=_shown(shown.get(e.query_id or ""), e.client_id, e.product_id),
                )
                for e in resolved
            ]
        report = self.events.add(resolved)
        self.event_model.add(report.stored)
        self.expire_events()
        return report

    def erase_user(self, client_id: str) -> int:
        gone = self.events.erase_client(client_id)
        had_profile = self.event_model.forget_client(client_id)
        if not gone and not had_profile:
            raise NotFoundError(f"no events or profile for shopper {client_id!r}")
        return gone

    def upsert_products(self, products: Sequence[Product]) -> WriteReport:
        if not products:
            raise BadInputError("no products to write; send at least one")
        check_batch(products)  # ids and repeats, before the embedding work and before any write
        self.check_index(fresh=True)
        if self.vector_cache is None:  # opened once: reading every shard per write grew with writes
            self.vector_cache = embedding_cache(self.settings, self.embedder)
        vectors, _ = embed_texts(
            [p.embedding_text() for p in products],
            self.embedder,
            self.vector_cache,
            batch_size=self.settings.batch_size,
        )
        report = self.store.upsert(products, vectors)
        self.reviews.publish([p.id for p in products])
        return report

    def delete_product(self, product_id: str) -> WriteReport:
        self.check_index(fresh=True)
        if not self.backend.fetch([product_id]):
            raise NotFoundError(f"unknown product {product_id!r}")
        return self.store.delete([product_id])

    def add_reviews(self, reviews: Sequence[Review]) -> IngestReport:
        if self.sentiment is None:
            raise FeatureUnavailableError(
                "this service has no sentiment model to score reviews; train one with "
                "`shoprank train sentiment` and set SHOPRANK_SENTIMENT_PATH"
            )
        # the store's add publishes the aggregates of the products it added reviews to
        return ingest_reviews(
            reviews,
            model=self.sentiment.get(),
            store=self.reviews,
            known_products=lambda ids: set(self.backend.fetch(ids)),
        )

    def ready(self) -> dict[str, Any]:
        """Raises when the backend cannot answer; the counts otherwise."""
        return {"products": self.backend.count(), "events": self.event_model.events_seen}


def build_services(s: Settings) -> Services:
    """Open the backend, check the index fits the embedding model, load models and events."""
    f = factory(s.backend)
    embedder = embedder_from(s)  # products (writes)
    queries = query_embedder_from(s, embedder)  # queries: the same model, maybe another runtime
    backend = f.search(s)
    check_compatible(backend.manifest(), embedder, f.where(s))
    if queries is not embedder:
        check_compatible(backend.manifest(), queries, f.where(s))
    # The embedded backend writes through to its store and updates its in-memory index itself.
    store: ProductWriter = backend if s.backend == "embedded" else f.store(s)  # type: ignore[assignment]
    retriever = Retriever(backend, queries, retrieval_config(s))
    known: dict[str, tuple[str, str]] = {}  # product → (brand, category), for shopper profiles

    def facets_of(pid: str) -> tuple[str, str]:
        if pid not in known:
            p = backend.fetch([pid]).get(pid)
            known[pid] = (p.brand, p.category) if p is not None else ("", "")
        return known[pid]

    event_model = EventModel(
        PersonalizationConfig(
            half_life_days=s.event_half_life_days,
            popularity_prior=s.popularity_prior,
            profile_ttl_days=s.event_ttl_days,
        ),
        brand_of=lambda pid: facets_of(pid)[0],
        category_of=lambda pid: facets_of(pid)[1],
    )
    events = f.events(s)
    if s.event_ttl_days > 0:
        now = time.time()
        expired = events.expire(now - s.event_ttl_days * 86400.0, after=now + MAX_CLOCK_SKEW_S)
        if expired:
            log.info("expired %d events older than %s days or dated in the future", expired, s.event_ttl_days)
    event_model.add(events.events())
    vocab = vocabulary(backend, events) if s.query_understanding else None
    parts = pipeline_parts(s, retriever, vocab=vocab)
    reranker = parts.reranker
    sentiment: Once[SentimentModel] | None = None
    if s.sentiment_path is not None:
        from ranker.signals.sentiment import MiniLMSentiment

        path, device = s.sentiment_path, s.device

        def load_sentiment() -> SentimentModel:
            return MiniLMSentiment(path, device=device)

        sentiment = Once(load_sentiment)
    searchers = {name: build_pipeline(name, parts) for name in API_PIPELINES}
    full = searchers["full"]
    if isinstance(full, UnderstandingSearcher):
        full = full.inner
    assert isinstance(full, FullPipeline)
    services = Services(
        settings=s,
        backend=backend,
        store=store,
        embedder=embedder,
        retriever=retriever,
        searchers=MappingProxyType(searchers),
        reviews=f.reviews(s),
        events=events,
        event_model=event_model,
        recommender=Recommender(backend, event_model, prior=review_prior(s), device=s.device),
        sentiment=sentiment,
        reranker=reranker,
        vocabulary=vocab,
        where=f.where(s),
        results=ResultCache(s.result_cache_size, s.result_cache_refresh_s),
    )
    # Load the models now, so the first shopper does not wait for them and /readyz means ready.
    embedder.encode(["warm up"])
    queries.encode(["warm up"])
    # ... and build what a search reads lazily (the embedded BM25 and strict-leg indexes, the
    # pipelines' caches) with one search per pipeline: no shopper pays for it (not logged).
    for searcher in searchers.values():
        searcher.search(SearchRequest("warm up", k=1, with_products=False))
    if reranker is not None:
        reranker.score("warm up", [Product("warm-up", "warm up")])
    mmr(np.ones(2), np.eye(2), 2, 0.5, device=s.device)  # imports torch and picks the device
    services.last_expiry = services.last_sync = services.last_vocabulary = time.time()  # done above
    full.popularity = event_model.popularity  # the shop's signals, attached to the full pipeline
    full.personal = services.personal
    return services
