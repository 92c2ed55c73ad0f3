"""Build stores, search backends and retrievers from settings: the backend registry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from indexer.base import IndexStore
from indexer.embedding.embedders import Embedder, EmbeddingCache, cache_id, make_embedder
from indexer.errors import BadInputError
from indexer.events import EventStore
from indexer.pipeline import check_compatible
from indexer.reviews import ReviewPrior, ReviewStore
from plugin_api.settings import Settings
from ranker.base import SearchBackend
from ranker.retrieval.retriever import RetrievalConfig, Retriever

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ranker.query.vocabulary import Vocabulary
    from ranker.ranking.pipelines import PipelineParts


def _embedded_store(s: Settings) -> IndexStore:
    from indexer.embedded.store import EmbeddedStore

    return EmbeddedStore(s.embedded_dir)


def _embedded_backend(s: Settings) -> SearchBackend:
    from indexer.embedded.store import EmbeddedStore
    from ranker.retrieval.embedded import EmbeddedBackend

    return EmbeddedBackend(EmbeddedStore(s.embedded_dir))


def _client(s: Settings) -> Any:
    from indexer.opensearch.client import make_client

    return make_client(s.opensearch_url, timeout=s.opensearch_timeout_s)


def _opensearch_store(s: Settings) -> IndexStore:
    from indexer.opensearch.store import OpenSearchStore

    return OpenSearchStore(_client(s), alias=s.index_alias, shards=s.shards, replicas=s.replicas)


def _opensearch_backend(s: Settings) -> SearchBackend:
    from ranker.retrieval.opensearch import OpenSearchBackend

    return OpenSearchBackend(
        _client(s), alias=s.index_alias, record_cache_size=s.opensearch_record_cache_size
    )


def review_prior(s: Settings) -> ReviewPrior:
    return ReviewPrior(strength=s.review_prior_strength)


def pipeline_parts(
    s: Settings,
    retriever: Retriever,
    *,
    with_reranker: bool = True,
    vocab: Vocabulary | None = None,
) -> PipelineParts:
    """What the named pipelines are built from, per the settings: the cross-encoder
    (``reranker_path``, opened only when ``with_reranker``), the fusion file (``fusion_path``;
    None: the pipeline's default), candidate depths, the review prior, the device, and query
    understanding (``query_understanding``: ``vocab``'s rewriter, one built over the backend
    when not given)."""
    from ranker.ranking.linear_fusion import LinearFusion
    from ranker.ranking.pipelines import PipelineParts

    rewriter = None
    if s.query_understanding:
        vocab = vocab or vocabulary(retriever.backend)
        rewriter = vocab.rewriter if vocab is not None else None
    reranker = None
    if with_reranker and s.reranker_path is not None:
        from ranker.rerank.registry import open_reranker

        reranker = open_reranker(
            s.reranker_path, runtime=s.reranker_runtime, device=s.device, threads=s.model_threads
        )
        if s.rerank_cache_size:
            from ranker.rerank.cache import CachedReranker

            reranker = CachedReranker(reranker, s.rerank_cache_size)
    return PipelineParts(
        retriever,
        reranker,
        LinearFusion.load(s.fusion_path) if s.fusion_path is not None else None,
        candidates=s.rerank_candidates,
        strict_candidates=s.strict_candidates,
        rerank_top=s.rerank_top,
        prior=review_prior(s),
        device=s.device,
        rewriter=rewriter,
    )


def vocabulary(backend: SearchBackend, events: EventStore | None = None) -> Vocabulary | None:
    """The catalog's vocabulary (query rewriter and suggester) over the backend, with the shop's
    query log from ``events``; None when the backend cannot list its words. A term the lexicon
    lacks is looked up in the live index before it is corrected (products added since)."""
    from ranker.base import Filters
    from ranker.query.lexicon import LexiconSource
    from ranker.query.vocabulary import Vocabulary

    if not isinstance(backend, LexiconSource):
        return None

    def confirm(term: str) -> bool:
        return bool(backend.lexical(term, 1, Filters()))

    return Vocabulary(
        backend, confirm=confirm, shop_queries=(lambda: shop_queries(events)) if events is not None else None
    )


def shop_queries(events: EventStore) -> dict[str, int]:
    """Analyzed query text → distinct shoppers who clicked, added to cart or bought after it,
    counting only events the service vouches for (trusted, or verified browser events)."""
    from ranker.query.suggest import ENGAGED, engaged_queries

    engaged = [
        e for e in events.events() if e.action_name in ENGAGED and e.query_id and (e.trusted or e.verified)
    ]
    records = events.queries(sorted({e.query_id for e in engaged if e.query_id}))
    texts = {qid: r.user_query for qid, r in records.items()}
    texts |= {
        e.query_id: e.user_query for e in engaged if e.query_id and e.user_query and e.query_id not in texts
    }
    return engaged_queries(texts, ((e.query_id, e.client_id, e.action_name, True) for e in engaged))


def _embedded_reviews(s: Settings) -> ReviewStore:
    from indexer.embedded.reviews import EmbeddedReviewStore

    return EmbeddedReviewStore(s.embedded_dir)


def _opensearch_reviews(s: Settings) -> ReviewStore:
    from indexer.opensearch.reviews import OpenSearchReviewStore

    return OpenSearchReviewStore(_client(s), alias=s.index_alias, prior=review_prior(s))


def _embedded_events(s: Settings) -> EventStore:
    from indexer.embedded.events import EmbeddedEventStore

    return EmbeddedEventStore(s.embedded_dir)


def _opensearch_events(s: Settings) -> EventStore:
    from indexer.opensearch.events import OpenSearchEventStore

    return OpenSearchEventStore(_client(s), prefix=s.ubi_prefix)


@dataclass(frozen=True)
class BackendFactory:
    store: Callable[[Settings], IndexStore]
    search: Callable[[Settings], SearchBackend]
    where: Callable[[Settings], str]
    reviews: Callable[[Settings], ReviewStore]
    events: Callable[[Settings], EventStore]


BACKENDS = MappingProxyType(
    {
        "embedded": BackendFactory(
            _embedded_store,
            _embedded_backend,
            lambda s: f"the embedded index in {s.embedded_dir}",
            _embedded_reviews,
            _embedded_events,
        ),
        "opensearch": BackendFactory(
            _opensearch_store,
            _opensearch_backend,
            lambda s: f"OpenSearch index {s.index_alias!r} at {s.opensearch_url}",
            _opensearch_reviews,
            _opensearch_events,
        ),
    }
)


def factory(name: str) -> BackendFactory:
    try:
        return BACKENDS[name]
    except KeyError:
        raise BadInputError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}") from None


def embedder_from(s: Settings) -> Embedder:
    return make_embedder(s.embedder, device=s.device, model_path=s.model_path, onnx_dir=s.onnx_embedder_dir)


# `query_embedder = "auto"`: queries of the packaged minilm go to this runtime of the same model
AUTO_QUERY_EMBEDDER = "minilm-onnx"


def auto_query_runtime(s: Settings) -> bool:
    """Whether ``query_embedder = "auto"`` means the ONNX runtime (the packaged minilm model)."""
    return s.query_embedder == "auto" and s.embedder == "minilm" and s.model_path is None


def query_embedder_from(s: Settings, documents: Embedder | None = None) -> Embedder:
    """What embeds queries (``documents``: the product embedder, when already built). "auto": the
    packaged minilm on onnxruntime fp32 (the same vectors, bench/results/embedder_onnx) when its
    export is there (`shoprank serve`/`index` make it), else the product embedder, said once."""
    name = s.query_embedder
    if name == "same" or (name == "auto" and not auto_query_runtime(s)):
        return documents or embedder_from(s)
    if name == "auto":
        from indexer.embedding.onnx_embedder import EXPORT_FILE

        if not (s.onnx_embedder_dir / EXPORT_FILE).exists():
            log.info(
                "queries are embedded with torch: no ONNX export in %s (`shoprank export --embedder`)",
                s.onnx_embedder_dir,
            )
            return documents or embedder_from(s)
        name = AUTO_QUERY_EMBEDDER
    return make_embedder(name, device=s.device, onnx_dir=s.onnx_embedder_dir, threads=s.model_threads)


def embedding_cache(s: Settings, embedder: Embedder) -> EmbeddingCache:
    return EmbeddingCache(s.embedding_cache_dir, cache_id(embedder), embedder.dimension)


def retrieval_config(s: Settings) -> RetrievalConfig:
    return RetrievalConfig(
        candidates=s.candidates,
        fusion=s.fusion,  # type: ignore[arg-type]
        rrf_k=s.rrf_k,
        weights=MappingProxyType({"bm25": s.weight_bm25, "vector": s.weight_vector}),
    )


def open_retriever(s: Settings, embedder: Embedder | None = None) -> Retriever:
    """A retriever over the configured backend, after checking the index manifest fits the model
    (``embedder``: what embeds queries; default :func:`query_embedder_from`)."""
    f = factory(s.backend)
    emb = embedder or query_embedder_from(s)
    backend = f.search(s)
    check_compatible(backend.manifest(), emb, f.where(s))
    return Retriever(backend, emb, retrieval_config(s))
