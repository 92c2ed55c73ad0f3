"""The pipeline registry: every named pipeline has the one searcher shape and is built from parts;
the CLI, the API, ``eval`` and training build from the same registry."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.embedded.store import EmbeddedStore
from indexer.embedding.embedders import HashingEmbedder
from indexer.errors import BadInputError
from indexer.pipeline import build_index
from ranker.base import Mode, SearchOptions, SearchRequest
from ranker.ranking.full import FullPipeline
from ranker.ranking.pipelines import PIPELINES, PipelineParts, build_pipeline, check_names
from ranker.retrieval.embedded import EmbeddedBackend
from ranker.retrieval.retriever import Retriever

EMB = HashingEmbedder(dimension=32)
QUERY = "printer ink cartridge"


class PriceReranker:
    """A transparent stand-in: cheaper is 'more relevant'."""

    name = "price"

    def score(self, query, products):
        return np.asarray([1.0 / (1.0 + (p.price or 0.0)) for p in products], dtype=np.float32)


@pytest.fixture(scope="module")
def parts(tmp_path_factory, fixture_products):
    store = EmbeddedStore(tmp_path_factory.mktemp("idx"))
    build_index(fixture_products, store, EMB)
    return PipelineParts(Retriever(EmbeddedBackend(store), EMB), PriceReranker(), candidates=20)


def test_the_registry_names_the_five_pipelines():
    assert list(PIPELINES) == ["bm25", "vector", "hybrid", "rerank", "full"]
    with pytest.raises(TypeError):
        PIPELINES["mine"] = PIPELINES["bm25"]  # type: ignore[index]


@pytest.mark.parametrize("name", list(PIPELINES))
def test_every_pipeline_answers_the_one_searcher_shape(parts, name):
    searcher = build_pipeline(name, parts)
    res = searcher.search(SearchRequest(QUERY, k=5), SearchOptions())
    assert 1 <= len(res.hits) <= 5
    assert [h.rank for h in res.hits] == list(range(1, len(res.hits) + 1))
    assert res.hits == searcher.search(SearchRequest(QUERY, k=5)).hits  # options default to none


@pytest.mark.parametrize("mode", [m.value for m in Mode])
def test_a_first_stage_pipeline_is_its_mode_whatever_the_request_says(parts, mode):
    other = next(m for m in Mode if m.value != mode)
    got = build_pipeline(mode, parts).search(SearchRequest(QUERY, k=8, mode=other))
    want = parts.retriever.search(SearchRequest(QUERY, k=8, mode=Mode(mode)))
    assert got.mode == Mode(mode)
    assert [h.id for h in got.hits] == [h.id for h in want.hits]


def test_rerank_reorders_the_hybrid_candidates_by_the_reranker(parts):
    res = build_pipeline("rerank", parts).search(SearchRequest(QUERY, k=3))
    first = parts.retriever.search(SearchRequest(QUERY, k=20))
    prices = {h.id: h.product.price or 0.0 for h in first.hits}
    order = [h.id for h in first.hits]
    assert [h.id for h in res.hits] == sorted(prices, key=lambda i: (prices[i], order.index(i)))[:3]


def test_full_uses_the_reranker_when_given_and_text_fusion_without(parts):
    with_ce = build_pipeline("full", parts)
    without = build_pipeline("full", PipelineParts(parts.retriever))
    assert isinstance(with_ce, FullPipeline) and isinstance(without, FullPipeline)
    assert "cross_encoder" in with_ce.fusion.weights
    assert "cross_encoder" not in without.fusion.weights
    hit = with_ce.search(SearchRequest(QUERY, k=3), SearchOptions(explain=True)).hits[0]
    assert "cross_encoder" in hit.sources


def test_rerank_without_a_reranker_says_how_to_get_one(parts):
    with pytest.raises(BadInputError, match="shoprank train reranker"):
        build_pipeline("rerank", PipelineParts(parts.retriever))


def test_an_unknown_pipeline_lists_the_choices(parts):
    with pytest.raises(BadInputError, match="choose from bm25, vector, hybrid, rerank, full"):
        build_pipeline("bm42", parts)
    with pytest.raises(BadInputError, match="choose from"):
        check_names([])
