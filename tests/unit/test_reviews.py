"""Reviews: reading, shrinkage, the embedded and OpenSearch review stores, ingestion, features."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from indexer.embedded.reviews import EmbeddedReviewStore
from indexer.embedded.store import EmbeddedStore
from indexer.errors import BadInputError
from indexer.opensearch.reviews import OpenSearchReviewStore, review_index_body
from indexer.product import Product, catalog_hash
from indexer.reviews import Review, ReviewPrior, ReviewStats, aggregate, read_reviews, shrunk_mean
from ranker.base import Hit
from ranker.ranking.features import FEATURES, feature_matrix, signals_from_reviews
from ranker.retrieval.embedded import EmbeddedBackend
from ranker.signals.review_ingest import ingest_reviews
from tests.unit.test_opensearch_requests import Call, FakeNode, fake_client


def _scored(
    pid: str, sentiment: float, rating: float | None = None, n: int = 1, tag: str = ""
) -> list[Review]:
    return [Review(pid, f"review {tag}{i} of {pid}", rating, "2024-05-01", sentiment) for i in range(n)]


def test_one_glowing_review_does_not_outrank_two_hundred_good_ones() -> None:
    prior = ReviewPrior()
    stats = aggregate([*_scored("one", 1.0, 5.0), *_scored("many", 0.7, 4.0, n=200)])
    one, many = stats["one"], stats["many"]
    assert (one.count, many.count) == (1, 200)
    assert many.sentiment(prior) > one.sentiment(prior) and many.rating(prior) > one.rating(prior)
    assert one.sentiment(prior) == pytest.approx(1.0 / 11.0)  # (10 · 0 + 1) / (10 + 1)
    assert many.sentiment(prior) == pytest.approx(140.0 / 210.0)
    # Features follow: the well-reviewed product gets the larger sentiment and rating features.
    x = feature_matrix(
        [
            Hit(pid, 1.0, i + 1, {}, Product(pid, f"p {pid}", reviews=stats[pid]))
            for i, pid in enumerate(stats)
        ]
    )
    col = {f: j for j, f in enumerate(FEATURES)}
    assert x[1, col["sentiment"]] > x[0, col["sentiment"]] and x[1, col["rating"]] > x[0, col["rating"]]
    assert x[1, col["review_count"]] > x[0, col["review_count"]]


def test_shrinkage_math_and_stats_round_trip() -> None:
    assert shrunk_mean(0.0, 0, 0.3, 10) == 0.3 and shrunk_mean(5.0, 5, 0.0, 0) == 1.0
    s = ReviewStats().add(0.5, 4.0).add(-1.0, None)
    assert s == ReviewStats(2, -0.5, 1, 4.0)
    d = s.to_dict(ReviewPrior(strength=2))
    assert d["sentiment"] == pytest.approx(-0.125) and d["rating"] == pytest.approx(10.0 / 3.0)
    assert ReviewStats.from_dict(d) == s
    sig = signals_from_reviews(ReviewStats(), ReviewPrior())
    assert sig.sentiment is None and sig.rating is None and sig.review_count == 0
    with pytest.raises(BadInputError, match="review prior"):
        ReviewPrior(sentiment=2.0)


def test_reviews_do_not_change_catalog_identity() -> None:
    p = Product("a", "Lenovo notebook")
    q = Product("a", "Lenovo notebook", reviews=ReviewStats(3, 1.5, 3, 12.0))
    assert p.content_hash() == q.content_hash() and catalog_hash([p]) == catalog_hash([q])
    assert Product.from_dict(q.to_dict()) == q


def test_read_reviews_reports_bad_lines_and_keeps_good_ones(tmp_path) -> None:
    f = tmp_path / "reviews.jsonl"
    lines = [
        {"product_id": "p01", "rating": 5, "text": "Great  laptop", "date": "2024-05-01"},
        {"product_id": "", "rating": 4, "text": "no product"},
        {"product_id": "p02", "rating": 9, "text": "bad rating"},
        {"product_id": "p02", "rating": True, "text": "bool rating"},
        {"product_id": "p03", "text": "   "},
        {"product_id": "p04", "text": "no rating is fine"},
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n")
    read = read_reviews(f)
    assert [(r.product_id, r.rating, r.text) for r in read.reviews] == [
        ("p01", 5.0, "Great laptop"),
        ("p04", None, "no rating is fine"),
    ]
    reasons = [str(e) for e in read.errors]
    assert len(reasons) == 5 and reasons[0].endswith(":2: product_id is missing")
    assert "rating must be from 1 to 5" in reasons[1] and "not JSON" in reasons[4]
    with pytest.raises(BadInputError, match="JSONL file"):
        read_reviews(tmp_path / "missing.jsonl")


def test_review_ids_are_content_hashes() -> None:
    a, b = Review("p1", "ok", 4.0, "2024-01-01"), Review("p1", "ok", 4.0, "2024-01-01", sentiment=0.3)
    assert a.id == b.id and a.id != Review("p1", "ok", 5.0, "2024-01-01").id


def test_embedded_review_store_dedupes_survives_restart_and_torn_lines(tmp_path) -> None:
    store = EmbeddedReviewStore(tmp_path)
    rep = store.add([*_scored("p1", 0.5, 4.0, n=3), *_scored("p2", -1.0, 1.0)])
    assert (rep.added, rep.duplicates, rep.products) == (4, 0, ["p1", "p2"])
    again = store.add(_scored("p1", 0.5, 4.0, n=4))  # three already stored, one new
    assert (again.added, again.duplicates, again.products) == (1, 3, ["p1"])
    with open(tmp_path / "reviews.jsonl", "a") as fh:
        fh.write('{"product_id": "p9", "te')  # a crash mid-append
    fresh = EmbeddedReviewStore(tmp_path)
    assert fresh.stats() == {"p1": ReviewStats(4, 2.0, 4, 16.0), "p2": ReviewStats(1, -1.0, 1, 1.0)}
    assert fresh.stats(["p2", "nope"]) == {"p2": ReviewStats(1, -1.0, 1, 1.0)}
    assert fresh.publish() == []


def test_embedded_backend_serves_products_with_their_reviews_across_rebuilds(
    tmp_path, fixture_products
) -> None:
    from indexer.embedding.embedders import HashingEmbedder
    from indexer.pipeline import build_index

    store = EmbeddedStore(tmp_path / "index")
    emb = HashingEmbedder(dimension=32)
    build_index(fixture_products, store, emb)
    EmbeddedReviewStore(store.root).add(_scored("p01", 0.8, 5.0, n=2))
    backend = EmbeddedBackend(store)
    got = backend.fetch(["p01", "p02"])
    assert got["p01"].reviews == ReviewStats(2, 1.6, 2, 10.0) and got["p02"].reviews is None
    build_index(fixture_products[:5], store, emb)  # a rebuild keeps the reviews
    backend.reload()
    assert backend.fetch(["p01"])["p01"].reviews == ReviewStats(2, 1.6, 2, 10.0)


class FakeSentiment:
    name = "fake-sentiment"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.asarray([0.9 if "great" in t else -0.9 for t in texts], dtype=np.float32)


def test_ingest_scores_stores_and_reports_unknown_products(tmp_path) -> None:
    store = EmbeddedReviewStore(tmp_path)
    model = FakeSentiment()
    reviews = [
        Review("p1", "great screen", 5.0),
        Review("p1", "awful keyboard", 2.0),
        Review("ghost", "great ghost", 5.0),
    ]
    rep = ingest_reviews(reviews, model=model, store=store, known_products=lambda ids: {"p1"}, batch_size=1)
    assert (rep.read, rep.added, rep.duplicates, rep.products) == (3, 2, 0, 1)
    assert [e.id for e in rep.errors] == ["ghost"] and "shoprank upsert" in rep.errors[0].reason
    assert model.calls == [["great screen"], ["awful keyboard"]]  # unknown products are not scored
    stats = store.stats()["p1"]
    assert stats.count == 2 and stats.sentiment_sum == pytest.approx(0.0, abs=1e-6)
    assert "ghost" not in store.stats()


# -- OpenSearch: exact requests against the recording fake node ---------------------------------


def _bulk_reply(status_by_id: dict[str, int]) -> Any:
    def reply(call: Call) -> tuple[int, Any]:
        items = []
        for line in call.body:
            op = next(iter(line))
            if op in ("create", "update", "index"):
                rid = line[op]["_id"]
                st = status_by_id.get(rid, 201 if op == "create" else 200)
                item: dict[str, Any] = {"_id": rid, "status": st}
                if st >= 300:
                    item["error"] = {
                        "type": "version_conflict_engine_exception"
                        if st == 409
                        else "document_missing_exception"
                    }
                items.append({op: item})
        return 200, {"took": 1, "errors": any(s >= 300 for s in status_by_id.values()), "items": items}

    return reply


def test_opensearch_review_store_requests() -> None:
    reviews = [*_scored("p1", 0.5, 4.0, n=2), *_scored("p2", -1.0)]
    node = FakeNode()
    node.on("PUT", "/shoprank-products-reviews", (200, {"acknowledged": True}))
    node.on("POST", "/shoprank-products-reviews/_bulk", _bulk_reply({reviews[1].id: 409}))
    buckets = [
        {
            "key": {"product": "p1"},
            "doc_count": 2,
            "sentiment_sum": {"value": 1.0},
            "rating_count": {"value": 2},
            "rating_sum": {"value": 8.0},
        },
        {
            "key": {"product": "p2"},
            "doc_count": 1,
            "sentiment_sum": {"value": -1.0},
            "rating_count": {"value": 1},
            "rating_sum": {"value": 4.0},
        },
    ]
    node.on("HEAD", "/shoprank-products-reviews", (404, {}), (200, {}))
    node.on(
        "POST",
        "/shoprank-products-reviews/_search",
        (200, {"aggregations": {"products": {"buckets": buckets}}}),
    )
    node.on("PUT", "/shoprank-products/_mapping", (200, {"acknowledged": True}))
    node.on("POST", "/shoprank-products/_bulk", _bulk_reply({"p2": 404}))
    store = OpenSearchReviewStore(fake_client(node), alias="shoprank-products", prior=ReviewPrior(strength=2))
    rep = store.add(reviews)
    assert (rep.added, rep.duplicates, rep.products) == (2, 1, ["p1", "p2"])
    calls = {(c.method, c.path): c for c in node.calls}
    assert calls[("PUT", "/shoprank-products-reviews")].body == review_index_body()
    bulk = calls[("POST", "/shoprank-products-reviews/_bulk")]
    assert bulk.params["refresh"] == "wait_for"
    assert bulk.body[0] == {"create": {"_id": reviews[0].id}}
    assert bulk.body[1] == reviews[0].to_dict()
    search = calls[("POST", "/shoprank-products-reviews/_search")].body
    assert search == {
        "size": 0,
        "aggs": {
            "products": {
                "composite": {"size": 500, "sources": [{"product": {"terms": {"field": "product_id"}}}]},
                "aggs": {
                    "sentiment_sum": {"sum": {"field": "sentiment"}},
                    "rating_count": {"value_count": {"field": "rating"}},
                    "rating_sum": {"sum": {"field": "rating"}},
                },
            }
        },
        "query": {"terms": {"product_id": ["p1", "p2"]}},
    }
    mapping = calls[("PUT", "/shoprank-products/_mapping")].body
    assert mapping["properties"]["reviews"]["properties"]["sentiment"] == {"type": "float"}
    update = calls[("POST", "/shoprank-products/_bulk")].body
    assert update[0] == {"update": {"_id": "p1"}}
    assert update[1] == {
        "doc": {
            "reviews": {
                "count": 2,
                "sentiment_sum": 1.0,
                "rating_count": 2,
                "rating_sum": 8.0,
                "sentiment": 0.25,
                "rating": 3.5,
            }
        }
    }
    assert store.publish(["p2"])[0].reason == "product not in the index"
    # the reviews field is put into the product mapping once per store, not on every publish: a
    # mapping change is a cluster-state update, which waits for the cluster manager (a review
    # write hung past 30 s while one was elected, in the cluster tier)
    assert [(c.method, c.path) for c in node.calls].count(("PUT", "/shoprank-products/_mapping")) == 1


def test_full_pipeline_explains_stored_review_signals(tmp_path, fixture_products) -> None:
    from indexer.embedding.embedders import HashingEmbedder
    from indexer.pipeline import build_index
    from ranker.base import SearchOptions, SearchRequest
    from ranker.ranking.full import FullPipeline
    from ranker.ranking.linear_fusion import LinearFusion
    from ranker.retrieval.retriever import Retriever

    store = EmbeddedStore(tmp_path / "index")
    emb = HashingEmbedder(dimension=32)
    build_index(fixture_products, store, emb)
    EmbeddedReviewStore(store.root).add(_scored("p16", 0.9, 5.0, n=30) + _scored("p17", -0.9, 1.0, n=30))
    fusion = LinearFusion({"bm25": 1.0, "sentiment": 1.0})
    pipe = FullPipeline(Retriever(EmbeddedBackend(store), emb), None, fusion, candidates=20)
    hits = pipe.search(SearchRequest("printer", k=10), SearchOptions(explain=True)).hits
    by_id = {h.id: h for h in hits}
    assert {"p16", "p17"} <= set(by_id)
    good, bad = by_id["p16"].explanation, by_id["p17"].explanation  # type: ignore[attr-defined]
    assert good["features"]["sentiment"] == pytest.approx(27.0 / 40.0)  # (10·0 + 30·0.9) / (10 + 30)
    assert bad["features"]["sentiment"] == pytest.approx(-27.0 / 40.0)
    assert good["features"]["review_count"] > 0 and good["contributions"]["sentiment"] > 0
    assert sum(good["contributions"].values()) == pytest.approx(by_id["p16"].score)
