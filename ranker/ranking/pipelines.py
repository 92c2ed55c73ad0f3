"""The named search pipelines, built from their parts: one registry for the CLI, the API, ``eval``
and training.

=========  ================================================================================
``bm25``   the lexical leg alone (the retriever in BM25 mode)
``vector`` the k-NN leg alone
``hybrid`` both legs fused (RRF or weighted min-max), the storefront's fast path
``rerank`` the hybrid candidates rescored by the cross-encoder
``full``   hybrid + strict keyword candidates → cross-encoder (when one is given) → learned
           fusion with the shop's signals → MMR, explained
=========  ================================================================================

Each is a :class:`~ranker.base.Searcher`: ``search(request, options) -> SearchResult``. With a
``rewriter`` in the parts, each runs behind query understanding
(:class:`~ranker.query.searcher.UnderstandingSearcher`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from indexer.errors import BadInputError
from indexer.product import Product
from indexer.reviews import ReviewPrior
from ranker.base import Mode, Reranker, Searcher, SearchOptions, SearchRequest, SearchResult
from ranker.query.rewrite import QueryRewriter
from ranker.query.searcher import UnderstandingSearcher
from ranker.ranking.full import DEFAULT_FUSION, FullPipeline
from ranker.ranking.linear_fusion import LinearFusion
from ranker.ranking.shipped import text_fusion
from ranker.rerank.stage import RerankingRetriever
from ranker.retrieval.retriever import STRICT_CANDIDATES, Retriever


@dataclass(frozen=True)
class PipelineParts:
    """What a pipeline may be built from. ``fusion`` None: the cross-encoder's default fusion when
    a reranker is given, else the text-only fusion."""

    retriever: Retriever
    reranker: Reranker | None = None
    fusion: LinearFusion | None = None
    candidates: int = 100
    strict_candidates: int = STRICT_CANDIDATES
    rerank_top: int | None = None  # `full`: the cross-encoder reads the first pass's top M (None: all)
    prior: ReviewPrior | None = None
    device: str = "auto"
    # query understanding in front of every pipeline (None: queries are searched as typed)
    rewriter: QueryRewriter | None = None


class ModeSearcher:
    """A first-stage pipeline: the retriever in one mode, whatever mode the request names."""

    def __init__(self, retriever: Retriever, mode: Mode):
        self.retriever = retriever
        self.mode = mode

    def search(self, req: SearchRequest, options: SearchOptions | None = None) -> SearchResult:
        return self.retriever.search(replace(req, mode=self.mode))


def _mode(mode: Mode) -> Callable[[PipelineParts], Searcher]:
    def build(parts: PipelineParts) -> Searcher:
        return ModeSearcher(parts.retriever, mode)

    return build


def _rerank(parts: PipelineParts) -> Searcher:
    if parts.reranker is None:
        raise BadInputError(
            "the rerank pipeline needs a trained reranker: pass --reranker DIR "
            "(train one with `shoprank train reranker`) or set SHOPRANK_RERANKER_PATH"
        )
    return RerankingRetriever(parts.retriever, parts.reranker, candidates=parts.candidates)


def _full(parts: PipelineParts) -> Searcher:
    fusion = parts.fusion or (DEFAULT_FUSION if parts.reranker is not None else text_fusion())
    return FullPipeline(
        parts.retriever,
        parts.reranker,
        fusion,
        candidates=parts.candidates,
        strict_candidates=parts.strict_candidates,
        device=parts.device,
        prior=parts.prior,
        types=None if parts.rewriter is None else _types_of(parts.rewriter),
        rerank_top=parts.rerank_top,
    )


def _types_of(rewriter: QueryRewriter) -> Callable[[Product], frozenset[str]]:
    def types(p: Product) -> frozenset[str]:
        return rewriter.product_types(p.title, p.category)

    return types


PIPELINES: Mapping[str, Callable[[PipelineParts], Searcher]] = MappingProxyType(
    {
        "bm25": _mode(Mode.BM25),
        "vector": _mode(Mode.VECTOR),
        "hybrid": _mode(Mode.HYBRID),
        "rerank": _rerank,
        "full": _full,
    }
)


def check_names(names: list[str]) -> list[str]:
    """The names, each a known pipeline; otherwise a "choose from …" error."""
    unknown = [n for n in names if n not in PIPELINES]
    if unknown or not names:
        raise BadInputError(f"unknown pipeline(s) {unknown}; choose from {', '.join(PIPELINES)}")
    return names


def build_pipeline(name: str, parts: PipelineParts) -> Searcher:
    """The named pipeline over ``parts``; an unknown name lists the known ones."""
    check_names([name])
    searcher = PIPELINES[name](parts)
    return searcher if parts.rewriter is None else UnderstandingSearcher(searcher, parts.rewriter)
