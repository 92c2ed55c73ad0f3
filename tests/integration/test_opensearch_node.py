"""Against a real OpenSearch node (``scripts/opensearch start``); skipped when none answers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from indexer.analysis import ANALYZER_VERSION
from indexer.embedding.embedders import HashingEmbedder
from indexer.errors import BadInputError, NotFoundError
from indexer.manifest import Manifest
from indexer.opensearch.store import OpenSearchStore
from indexer.product import Product, catalog_hash
from ranker.base import Filters
from ranker.retrieval.opensearch import OpenSearchBackend

pytestmark = pytest.mark.integration

URL = os.environ.get("SHOPRANK_OPENSEARCH_URL", "http://127.0.0.1:9200")
RUN = uuid.uuid4().hex[:10]
DIM = 32
EMBEDDER = HashingEmbedder(dimension=DIM)


def P(
    pid: str, title: str, desc: str, brand: str, cat: str, price: float | None, stock: bool | None = None
) -> Product:
    return Product(pid, title, desc, brand, cat, price, in_stock=stock)


PRODUCTS = [
    P("p01", "Lenovo ThinkPad notebook", "14 inch business machine", "Lenovo", "Computers", 999.0, True),
    P("p02", "Dell XPS 13", "Ultrabook with InfinityEdge display", "Dell", "Computers", 1299.0, True),
    P("p03", "HP LaserJet Pro printer", "Monochrome laser printer", "HP", "Printers", 199.0, False),
    P("p04", "HP Envy desktop computer", "Tower PC for the family", "HP", "Computers", 749.0),
    P("p05", "Philips Café Espresso Machine", "Fully automatic coffee maker", "Philips", "Kitchen", 399.0),
    P("p06", "Samsung Galaxy smartphone", "Android phone, 128 GB", "Samsung", "Phones", 599.0, True),
    P("p07", "Apple iPhone 15", "The latest iPhone", "Apple", "Phones", 899.0, False),
    P("p08", "Sony WH-1000XM5 headphones", "Noise cancelling over-ear", "Sony", "Audio", 349.0),
    P("p09", "Logitech MX Master mouse", "Wireless mouse for power users", "Logitech", "Accessories", 99.0),
    P("p10", "Logitech mouse pad", "Large desk mat", "logitech", "Accessories", 19.0, True),
    P("p11", "Samsung 980 PRO SSD", "NVMe solid state drive 1 TB", "Samsung", "Storage", 129.0),
    P("p12", "Seagate Barracuda hard drive", "3.5 inch HDD 4 TB", "Seagate", "Storage", 89.0),
    P("p13", "SanDisk USB stick 64 GB", "Small and fast", "SanDisk", "Storage", 12.0, True),
    P("p14", "LG OLED television 55", "4K smart TV", "LG", "TV", 1499.0),
    P("p15", "Canon EOS R50 camera", "Mirrorless camera kit", "Canon", "Cameras", 679.0),
    P("p16", "Bosch cordless drill", "18 V drill driver", "Bosch", "Tools", 129.0, False),
    P("p17", "Nvidia GeForce graphics card", "RTX 4070 GPU", "NVIDIA", "Components", 599.0),
    P("p18", "Intel Core i7 processor", "14th generation CPU", "Intel", "Components", 409.0),
    P("p19", "TP-Link wifi router", "Dual band wireless router", "TP-Link", "Networking", 59.0),
    P("p20", "APC UPS 1500VA", "Battery backup", "APC", "Power", None),
]


def embed(products: list[Product]) -> np.ndarray:
    return EMBEDDER.encode([p.embedding_text() for p in products])


def manifest_for(products: list[Product], dimension: int = DIM) -> Manifest:
    return Manifest(
        kind="opensearch",
        model_id=EMBEDDER.model_id,
        dimension=dimension,
        catalog_hash=catalog_hash(products),
        documents=len(products),
        analyzer_version=ANALYZER_VERSION,
    )


@pytest.fixture(scope="module")
def client(opensearch_client):
    return opensearch_client


def _store(client, request: pytest.FixtureRequest, suffix: str, **kw) -> OpenSearchStore:
    store = OpenSearchStore(client, f"shoprank-test-{RUN}-{suffix}", chunk_size=7, **kw)
    request.addfinalizer(store.drop)
    return store


@pytest.fixture(scope="module")
def built(client, request) -> tuple[OpenSearchStore, OpenSearchBackend, np.ndarray]:
    store = _store(client, request, "ro")
    vecs = embed(PRODUCTS)
    report = store.build(PRODUCTS, vecs, manifest_for(PRODUCTS))
    assert report.ok, report.errors
    assert report.indexed == len(PRODUCTS)
    return store, OpenSearchBackend(client, store.alias), vecs


@pytest.fixture
def fresh(client, request) -> Iterator[tuple[OpenSearchStore, OpenSearchBackend]]:
    store = _store(client, request, uuid.uuid4().hex[:6])
    assert store.build(PRODUCTS, embed(PRODUCTS), manifest_for(PRODUCTS)).ok
    yield store, OpenSearchBackend(client, store.alias)


def ids(scored) -> list[str]:
    return [s.id for s in scored]


def test_lexical_finds_the_product(built):
    _, backend, _ = built
    hits = backend.lexical("canon camera", 5, Filters())
    assert hits[0].id == "p15"
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_synonym_laptop_finds_notebook(built):
    _, backend, _ = built
    assert backend.lexical("laptop", 5, Filters())[0].id == "p01"
    assert backend.lexical("graphics card", 3, Filters())[0].id == "p17"
    assert "p17" in ids(backend.lexical("gpu", 5, Filters()))


def test_accents_and_plurals_fold(built):
    _, backend, _ = built
    assert backend.lexical("cafe espresso machines", 3, Filters())[0].id == "p05"
    assert backend.lexical("CAFÉS", 3, Filters())[0].id == "p05"
    assert backend.lexical("headphone", 3, Filters())[0].id == "p08"


def test_query_syntax_is_just_words(built):
    _, backend, _ = built
    assert backend.lexical('title:foo OR *:* {"match_all":{}}', 20, Filters()) == []
    hits = backend.lexical("printer AND title:(", 5, Filters())
    assert hits and hits[0].id == "p03"


def test_knn_scores_are_cosines(built):
    _, backend, vecs = built
    q = EMBEDDER.encode(["wireless mouse"])[0]
    hits = backend.knn(q, len(PRODUCTS), Filters())
    by_id = {p.id: i for i, p in enumerate(PRODUCTS)}
    expected = {p.id: float(np.dot(vecs[i], q)) for i, p in enumerate(PRODUCTS)}
    assert len(hits) == len(PRODUCTS)
    for h in hits:
        assert h.score == pytest.approx(expected[h.id], abs=1e-4)
    assert hits[0].id == max(expected, key=expected.get)
    assert backend.vectors(["p09"])["p09"] == pytest.approx(vecs[by_id["p09"]], abs=1e-6)
    assert backend.knn(np.zeros(DIM, dtype=np.float32), 5, Filters()) == []


@pytest.mark.parametrize(
    "filters",
    [
        Filters(brands=("hp",)),
        Filters(brands=("LOGITECH", "Sony")),
        Filters(price_min=100.0, price_max=600.0),
        Filters(price_max=50.0),
        Filters(in_stock=True),
        Filters(in_stock=False, brands=("hp", "bosch", "apple")),
    ],
)
def test_filters_match_the_reference(built, filters):
    _, backend, _ = built
    want = {p.id for p in PRODUCTS if filters.accepts(p)}
    assert want, "a filter case that accepts nothing proves little"
    q = EMBEDDER.encode(["computer"])[0]
    assert set(ids(backend.knn(q, len(PRODUCTS), filters))) == want
    # a query every product matches (its own title words), so the filter alone decides
    words = " ".join({w for p in PRODUCTS for w in p.title.split()})
    assert set(ids(backend.lexical(words, len(PRODUCTS), filters))) == want


def test_hybrid_one_round_trip(built):
    _, backend, _ = built
    q = "samsung phone"
    bm25, vec = backend.hybrid(q, EMBEDDER.encode([q])[0], 5, Filters(brands=("samsung",)))
    assert bm25[0].id in {"p06", "p11"} and set(ids(bm25)) <= {"p06", "p11"}
    assert set(ids(vec)) == {"p06", "p11"}
    assert -1.0 <= vec[0].score <= 1.0


def test_lexical_scores_fetch_count_manifest(built):
    store, backend, _ = built
    scores = backend.lexical_scores("hp printer", ["p03", "p04", "p14", "nope"])
    assert set(scores) == {"p03", "p04"} and scores["p03"] > scores["p04"] > 0
    full = {s.id: s.score for s in backend.lexical("hp printer", 20, Filters())}
    assert scores["p03"] == pytest.approx(full["p03"])
    got = backend.fetch(["p05", "p20", "missing"])
    assert got == {"p05": PRODUCTS[4], "p20": PRODUCTS[19]}
    assert backend.count() == len(PRODUCTS)
    m = backend.manifest()
    assert m == store.manifest()
    assert m is not None and m.dimension == DIM and m.catalog_hash == catalog_hash(PRODUCTS)
    m.check(model_id=EMBEDDER.model_id, dimension=DIM, analyzer_version=ANALYZER_VERSION)


def test_upsert_and_delete(fresh):
    store, backend = fresh
    changed = Product(
        "p12", "Seagate IronWolf NAS hard drive", "For network attached storage", "Seagate", price=149.0
    )
    new = Product("p99", "Raspberry Pi 5", "Single board computer", "Raspberry", "Computers", 80.0)
    report = store.upsert([changed, new], embed([changed, new]))
    assert report.ok and report.indexed == 2
    assert backend.lexical("ironwolf", 3, Filters())[0].id == "p12"
    assert backend.lexical("raspberry", 3, Filters())[0].id == "p99"
    assert backend.fetch(["p12"])["p12"] == changed
    assert backend.count() == len(PRODUCTS) + 1

    report = store.delete(["p99", "p01", "never-existed"])
    assert report.deleted == 2
    assert [(e.id, e.reason) for e in report.errors] == [("never-existed", "not found")]
    assert backend.fetch(["p99", "p01"]) == {}
    assert "p01" not in ids(backend.lexical("laptop", 5, Filters()))
    with pytest.raises(BadInputError):
        store.upsert([changed], np.zeros((1, DIM + 1), dtype=np.float32))


def test_cached_records_follow_every_write_on_the_node(fresh, client):
    """The record cache reads versions from the real node: a product written since is served as
    written, one deleted is gone, and an unchanged one comes from the cache (same object)."""
    store, _ = fresh
    backend = OpenSearchBackend(client, store.alias, record_cache_size=100)
    first = backend.fetch(["p12", "p01"])
    assert set(first) == {"p12", "p01"} and backend.fetch(["p01"])["p01"] is first["p01"]
    vec = backend.vectors(["p12"])["p12"]
    assert vec.shape == (DIM,) and vec.dtype == np.float32
    changed = replace(first["p12"], price=1.0, title="Seagate IronWolf Pro")
    assert store.upsert([changed], embed([changed])).ok
    assert backend.fetch(["p12"])["p12"] == changed
    assert store.delete(["p01"]).deleted == 1
    assert backend.fetch(["p01", "p12"]) == {"p12": changed}


def test_rebuild_swaps_alias_and_prunes(client, request):
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    ticks = iter(range(100))
    store = _store(client, request, "swap", keep_old=1, clock=lambda: t0 + timedelta(seconds=next(ticks)))
    backend = OpenSearchBackend(client, store.alias)
    names = []
    for round_ in range(3):
        products = PRODUCTS[: 10 + round_]
        report = store.build(products, embed(products), manifest_for(products))
        assert report.ok, report.errors
        names.append(report.target)
        assert store.current_index() == report.target
        assert backend.count() == len(products)
        assert backend.lexical("laptop", 3, Filters())[0].id == "p01"
    assert names == sorted(names) and len(set(names)) == 3
    assert store.versions() == names[1:]  # the oldest pruned, one previous kept
    aliases = client.indices.get_alias(name=store.alias)
    assert list(aliases) == [names[2]]
    assert aliases[names[2]]["aliases"][store.alias].get("is_write_index") is True


def test_refused_or_failed_build_keeps_serving(fresh, client):
    store, backend = fresh
    before = store.current_index()
    with pytest.raises(BadInputError, match="dimension"):
        store.build(PRODUCTS, np.ones((len(PRODUCTS), DIM + 3), dtype=np.float32), manifest_for(PRODUCTS))
    bad = [*PRODUCTS[:5], Product("huge", "Broken product", ean=("9" * 40000,))]
    report = store.build(bad, embed(bad), manifest_for(bad))
    assert not report.ok
    assert [e.id for e in report.errors] == ["huge"]
    assert "max_bytes_length_exceeded" in report.errors[0].reason or "immense" in report.errors[0].reason
    assert not client.indices.exists(index=report.target)
    assert store.current_index() == before and store.versions() == [before]
    assert backend.count() == len(PRODUCTS)
    assert backend.lexical("laptop", 3, Filters())[0].id == "p01"


def test_missing_alias(client):
    backend = OpenSearchBackend(client, f"shoprank-test-{RUN}-absent")
    store = OpenSearchStore(client, f"shoprank-test-{RUN}-absent")
    assert backend.manifest() is None and store.manifest() is None and store.current_index() is None
    with pytest.raises(NotFoundError):
        backend.lexical("laptop", 3, Filters())
    with pytest.raises(NotFoundError):
        store.delete(["p01"])


def test_retriever_end_to_end(built):
    from ranker.base import SearchRequest
    from ranker.retrieval.retriever import RetrievalConfig, Retriever

    _, backend, _ = built
    retriever = Retriever(backend, EMBEDDER, RetrievalConfig(candidates=10))
    result = retriever.search(SearchRequest("laptop", k=3, filters=Filters(price_max=1000.0)))
    assert result.hits[0].id == "p01" and result.hits[0].product == PRODUCTS[0]
    assert all(set(h.sources) == {"bm25", "vector"} for h in result.hits)
    assert all(h.sources["vector"].score is not None for h in result.hits)


def test_reviews_land_on_products_dedupe_and_survive_a_rebuild(client, request):
    from indexer.opensearch.reviews import OpenSearchReviewStore
    from indexer.reviews import Review, ReviewPrior, ReviewStats

    store = _store(client, request, "reviews")
    assert store.build(PRODUCTS, embed(PRODUCTS), manifest_for(PRODUCTS)).ok
    reviews = OpenSearchReviewStore(client, alias=store.alias, prior=ReviewPrior(strength=10))
    request.addfinalizer(lambda: client.indices.delete(index=reviews.index, ignore=[404]))
    backend = OpenSearchBackend(client, store.alias)
    batch = [Review("p03", f"printer review {i}", 4.0, "2024-05-01", 0.5) for i in range(3)]
    batch.append(Review("p09", "the mouse died", 1.0, None, -1.0))
    rep = reviews.add(batch)
    assert (rep.added, rep.duplicates, rep.products) == (4, 0, ["p03", "p09"])
    assert reviews.add(batch[:2]).duplicates == 2  # nothing counted twice
    got = backend.fetch(["p03", "p09", "p01"])
    assert got["p03"].reviews == ReviewStats(3, 1.5, 3, 12.0)
    assert got["p09"].reviews == ReviewStats(1, -1.0, 1, 1.0) and got["p01"].reviews is None
    doc = client.get(index=store.alias, id="p03")["_source"]["reviews"]
    assert doc["sentiment"] == pytest.approx(1.5 / 13, abs=1e-6) and doc["rating"] == pytest.approx(
        42.0 / 13, abs=1e-6
    )
    # A rebuild starts from the catalog; publishing puts every aggregate back.
    assert store.build(PRODUCTS, embed(PRODUCTS), manifest_for(PRODUCTS)).ok
    assert backend.fetch(["p03"])["p03"].reviews is None
    assert reviews.publish() == []
    assert backend.fetch(["p03"])["p03"].reviews == ReviewStats(3, 1.5, 3, 12.0)
    # Reviews of a product the index lacks are reported, not silently dropped.
    reviews.add([Review("ghost", "who am I", 3.0, None, 0.0)])
    assert [e.id for e in reviews.publish(["ghost"])] == ["ghost"]
