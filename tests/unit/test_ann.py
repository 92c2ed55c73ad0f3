"""The embedded backend's ANN graph on large base segments (issue 15, point 3): recall@100 against
exact search on a fixture, filters (broad ones through the graph, selective ones exactly), rows
the delta replaced or deleted never returned, new rows found."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from indexer.embedded.store import EmbeddedStore
from indexer.pipeline import build_index
from indexer.product import Product
from ranker.base import Filters
from ranker.retrieval.ann import AnnParams
from ranker.retrieval.embedded import EmbeddedBackend

DIM = 32
N = 3000


class ClusteredEmbedder:
    """Deterministic vectors around 40 centres (a cluster per text's hash), like products that
    come in families: neighbourhoods dense enough that a graph can miss some."""

    model_id = "clustered-32"
    dimension = DIM

    def __init__(self) -> None:
        self.centres = np.random.default_rng(0).normal(size=(40, DIM))

    def encode(self, texts, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            rng = np.random.default_rng(seed)
            v = self.centres[seed % 40] + 0.6 * rng.normal(size=DIM)
            out[i] = v / np.linalg.norm(v)
        return out


EMB = ClusteredEmbedder()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("ann")
    products = [
        Product(f"a{i}", f"item {i}", brand=f"b{i % 10}", price=float(i % 100), in_stock=i % 3 != 0)
        for i in range(N)
    ]
    build_index(products, EmbeddedStore(root), EMB)
    return root


def _exact_and_graph(root, **kw):
    exact = EmbeddedBackend(EmbeddedStore(root), ann=None, merge_min=10**9)
    graph = EmbeddedBackend(EmbeddedStore(root), ann=AnnParams(min_rows=1000, **kw), merge_min=10**9)
    assert exact._view.base.ann is None and graph._view.base.ann is not None
    return exact, graph


def _recall(exact, graph, queries, filters, k=100):
    got = []
    for q in queries:
        want = {s.id for s in exact.knn(q, k, filters)}
        have = [s.id for s in graph.knn(q, k, filters)]
        assert len(have) == min(k, len(want)) and len(set(have)) == len(have)
        got.append(len(want & set(have)) / max(len(want), 1))
    return float(np.mean(got))


def test_the_graph_finds_the_exact_top_100_and_filters_hold(store):
    exact, graph = _exact_and_graph(store)
    queries = EMB.encode([f"query {j}" for j in range(40)])
    assert _recall(exact, graph, queries, Filters()) >= 0.98
    broad = Filters(in_stock=True)  # 2/3 of the rows: through the graph, post-filtered
    assert _recall(exact, graph, queries, broad) >= 0.98
    narrow = Filters(brands=("b3",))  # 1/10: exact over the rows it allows
    assert _recall(exact, graph, queries, narrow) == 1.0
    for q in queries[:5]:
        for s in graph.knn(q, 100, broad):
            assert graph.fetch([s.id])[s.id].in_stock is True
        # scores are the exact cosines of what is returned
        got = graph.knn(q, 10, Filters())
        vecs = graph.vectors([s.id for s in got])
        assert [s.score for s in got] == pytest.approx([float(vecs[s.id] @ q) for s in got], abs=1e-6)


def test_rows_replaced_or_deleted_after_the_graph_was_built_are_never_returned(tmp_path):
    products = [Product(f"a{i}", f"item {i}") for i in range(1500)]
    build_index(products, EmbeddedStore(tmp_path), EMB)
    graph = EmbeddedBackend(EmbeddedStore(tmp_path), ann=AnnParams(min_rows=1000), merge_min=10**9)
    q = EMB.encode(["item 7"])[0]  # a0…: a7's own vector is the nearest
    assert graph.knn(q, 1, Filters())[0].id == "a7"
    graph.delete(["a7"])
    assert "a7" not in {s.id for s in graph.knn(q, 100, Filters())}
    new = Product("fresh", "item 7")  # the same text: the same vector, now in the delta
    graph.upsert([new], EMB.encode([new.embedding_text()]))
    assert graph.knn(q, 1, Filters())[0].id == "fresh"
    moved = Product("a8", "something else entirely")  # a8 replaced: its old vector is gone
    old_a8 = EMB.encode(["item 8"])[0]
    graph.upsert([moved], EMB.encode([moved.embedding_text()]))
    new_a8 = EMB.encode([moved.embedding_text()])[0]
    top = {s.id: s.score for s in graph.knn(old_a8, N, Filters())}
    assert top["a8"] == pytest.approx(float(new_a8 @ old_a8), abs=1e-5)  # its new vector, once
    graph.merge()  # a new base (and graph) over what is served now
    assert graph._view.base.ann is not None and graph.count() == 1500
    assert graph.knn(q, 1, Filters())[0].id == "fresh"


# -- the graph of a loaded version is saved beside it and loaded at the next start-up -----------
def _ann_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ranker.retrieval.ann"]


def test_the_graph_is_saved_with_the_version_and_loaded_next_time(tmp_path, caplog):
    products = [Product(f"a{i}", f"item {i}") for i in range(1200)]
    build_index(products, EmbeddedStore(tmp_path), EMB)
    params = AnnParams(min_rows=1000)
    queries = EMB.encode([f"query {j}" for j in range(10)])
    caplog.set_level("INFO", logger="ranker.retrieval.ann")
    first = EmbeddedBackend(EmbeddedStore(tmp_path), ann=params, merge_min=10**9)
    assert any("built and saved" in m for m in _ann_logs(caplog))
    caplog.clear()
    second = EmbeddedBackend(EmbeddedStore(tmp_path), ann=params, merge_min=10**9)
    assert any("loaded the HNSW graph" in m for m in _ann_logs(caplog))
    for q in queries:
        assert [s.id for s in second.knn(q, 50, Filters())] == [s.id for s in first.knn(q, 50, Filters())]

    # other parameters, or other vectors (a write in the log moves a row's vector): rebuilt
    caplog.clear()
    EmbeddedBackend(EmbeddedStore(tmp_path), ann=AnnParams(min_rows=1000, m=8), merge_min=10**9)
    assert any("built and saved" in m for m in _ann_logs(caplog))
    second.upsert([Product("a5", "something else")], EMB.encode(["something else"]))
    caplog.clear()
    EmbeddedBackend(EmbeddedStore(tmp_path), ann=params, merge_min=10**9)
    assert any("built and saved" in m for m in _ann_logs(caplog))


def test_a_damaged_graph_file_is_rebuilt_not_trusted(tmp_path, caplog):
    products = [Product(f"a{i}", f"item {i}") for i in range(1200)]
    build_index(products, EmbeddedStore(tmp_path), EMB)
    store = EmbeddedStore(tmp_path)
    params = AnnParams(min_rows=1000)
    good = EmbeddedBackend(store, ann=params, merge_min=10**9)
    graph = store.derived_dir(store.require_version()) / "hnsw.bin"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    caplog.set_level("INFO", logger="ranker.retrieval.ann")
    again = EmbeddedBackend(store, ann=params, merge_min=10**9)
    logs = _ann_logs(caplog)
    assert any("does not match its manifest" in m for m in logs) and any("built and saved" in m for m in logs)
    q = EMB.encode(["item 7"])[0]
    assert [s.id for s in again.knn(q, 20, Filters())] == [s.id for s in good.knn(q, 20, Filters())]


def test_a_folder_it_cannot_write_still_serves(tmp_path, monkeypatch, caplog):
    from ranker.retrieval.ann import HnswIndex

    products = [Product(f"a{i}", f"item {i}") for i in range(1200)]
    build_index(products, EmbeddedStore(tmp_path), EMB)

    def refuse(*a, **k):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(HnswIndex, "_save", staticmethod(refuse))
    caplog.set_level("WARNING", logger="ranker.retrieval.ann")
    backend = EmbeddedBackend(EmbeddedStore(tmp_path), ann=AnnParams(min_rows=1000), merge_min=10**9)
    assert backend._view.base.ann is not None
    assert any("could not save" in m for m in _ann_logs(caplog))
    assert backend.knn(EMB.encode(["item 7"])[0], 1, Filters())[0].id == "a7"


def test_the_search_ef_grows_with_the_graph():
    p = AnnParams()
    assert [p.ef_for(n) for n in (1_000, 200_000, 250_000, 500_000, 1_000_000, 5_000_000)] == [
        256,
        256,
        256,
        512,
        1024,
        1024,
    ]
    assert AnnParams(ef=64, ef_rows=1000, ef_max=100).ef_for(10_000) == 100
    from ranker.retrieval.ann import HnswIndex

    vecs = EMB.encode([f"item {i}" for i in range(300)])
    small = HnswIndex(vecs, AnnParams(min_rows=1, ef=16, ef_rows=100, ef_max=40))
    assert small.ef == 40 and len(small.search(vecs[0], 100)[0]) == 40  # k is capped at ef
