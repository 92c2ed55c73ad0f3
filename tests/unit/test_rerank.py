import numpy as np
import pytest

from indexer.embedded.store import EmbeddedStore
from indexer.embedding.embedders import HashingEmbedder
from indexer.errors import BadInputError
from indexer.pipeline import build_index
from ranker.base import SearchRequest
from ranker.rerank.stage import RerankingRetriever
from ranker.retrieval.embedded import EmbeddedBackend
from ranker.retrieval.retriever import Retriever

EMB = HashingEmbedder(dimension=32)


class PriceReranker:
    """A transparent stand-in: cheaper is 'more relevant'."""

    name = "price"

    def __init__(self):
        self.calls = []

    def score(self, query, products):
        self.calls.append((query, [p.id for p in products]))
        return np.asarray([1.0 / (1.0 + (p.price or 0.0)) for p in products], dtype=np.float32)


@pytest.fixture(scope="module")
def retriever(tmp_path_factory, fixture_products):
    store = EmbeddedStore(tmp_path_factory.mktemp("idx"))
    build_index(fixture_products, store, EMB)
    return Retriever(EmbeddedBackend(store), EMB)


def test_reranks_first_stage_candidates(retriever):
    rr = PriceReranker()
    res = RerankingRetriever(retriever, rr, candidates=20).search(SearchRequest("printer ink cartridge", k=3))
    first = retriever.search(SearchRequest("printer ink cartridge", k=20))
    assert rr.calls == [("printer ink cartridge", [h.id for h in first.hits])]
    prices = {h.id: h.product.price for h in first.hits}
    want = sorted(prices, key=lambda i: (prices[i], [h.id for h in first.hits].index(i)))[:3]
    assert [h.id for h in res.hits] == want
    for rank, h in enumerate(res.hits, start=1):
        assert h.rank == rank and h.sources["cross_encoder"].rank == rank
        assert h.score == pytest.approx(1 / (1 + h.product.price))
        assert {"bm25", "vector", "cross_encoder"} <= set(h.sources)
    assert "rerank" in res.timings_ms


def test_products_dropped_when_not_asked(retriever):
    res = RerankingRetriever(retriever, PriceReranker(), candidates=5).search(
        SearchRequest("mouse", k=2, with_products=False)
    )
    assert len(res.hits) == 2 and all(h.product is None for h in res.hits)


def test_bad_candidates():
    with pytest.raises(BadInputError):
        RerankingRetriever(None, PriceReranker(), candidates=0)  # type: ignore[arg-type]
