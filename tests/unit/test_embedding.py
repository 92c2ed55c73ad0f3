import numpy as np
import pytest

from indexer.embedding.embedders import EmbeddingCache, HashingEmbedder, embed_texts, make_embedder
from indexer.errors import BadInputError


class CountingEmbedder(HashingEmbedder):
    def __init__(self):
        super().__init__(dimension=16)
        self.calls: list[int] = []

    def encode(self, texts, *, batch_size=64, progress=False):
        self.calls.append(len(texts))
        return super().encode(texts)


def test_cache_reuses_vectors_across_runs(tmp_path):
    texts = ["red usb cable", "blue usb cable", "red usb cable"]
    emb = CountingEmbedder()
    v1, computed = embed_texts(texts, emb, EmbeddingCache(tmp_path, emb.model_id, 16))
    assert computed == 2 and emb.calls == [2]
    np.testing.assert_allclose(v1[0], v1[2])
    # A new process (fresh cache object) re-embeds nothing for an unchanged catalog...
    v2, computed = embed_texts(texts, emb, EmbeddingCache(tmp_path, emb.model_id, 16))
    assert computed == 0 and emb.calls == [2]
    np.testing.assert_allclose(v1, v2)
    # ...and only the changed text after an edit.
    _, computed = embed_texts(
        ["red usb cable", "green usb cable"], emb, EmbeddingCache(tmp_path, emb.model_id, 16)
    )
    assert computed == 1 and emb.calls == [2, 1]


def test_cache_is_keyed_by_model(tmp_path):
    a = EmbeddingCache(tmp_path, "model-a", 16)
    a.put_many([EmbeddingCache.key("x")], np.ones((1, 16), dtype=np.float32))
    assert EmbeddingCache(tmp_path, "model-a", 16).get(EmbeddingCache.key("x")) is not None
    assert EmbeddingCache(tmp_path, "model-b", 16).get(EmbeddingCache.key("x")) is None
    # A shard of another dimension is ignored, not misread.
    assert len(EmbeddingCache(tmp_path, "model-a", 32)) == 0


def test_hashing_embedder_is_deterministic_and_normalized():
    e = HashingEmbedder(dimension=32)
    a = e.encode(["wireless mouse", "wireless mouse", ""])
    np.testing.assert_allclose(a[0], a[1])
    assert np.linalg.norm(a[0]) == pytest.approx(1.0)
    assert not a[2].any()


def test_registry_error_lists_choices():
    with pytest.raises(BadInputError, match="choose from hashing, minilm"):
        make_embedder("bert-large")


@pytest.mark.model
def test_packaged_minilm_embeds_offline(minilm):
    v = minilm.encode(["laptop backpack", "notebook bag", "espresso machine"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])  # semantics, not just tokens
    assert minilm.model_id == "sentence-transformers/all-MiniLM-L6-v2" and minilm.dimension == 384


def test_concurrent_cache_writers_never_mix_up_vectors(tmp_path) -> None:
    """Two product writes at once used to pick the same shard name: a 500 from the rename, or one
    request's vectors filed under the other's keys (found by bench/crash_durability.py)."""
    import threading

    import numpy as np

    from indexer.embedding.embedders import EmbeddingCache

    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(tag: str) -> None:
        cache = EmbeddingCache(tmp_path, "model", 4)  # each request opens its own, as the service does
        try:
            for i in range(60):
                keys = [f"{tag}-{i}-{j}" for j in range(3)]
                vecs = np.asarray([[hash(k) % 997, i, j, 1.0] for j, k in enumerate(keys)], dtype=np.float32)
                if i == 0:
                    start.wait()
                cache.put_many(keys, vecs)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fresh = EmbeddingCache(tmp_path, "model", 4)
    assert len(fresh) == 2 * 60 * 3
    for tag in ("a", "b"):
        for i in range(60):
            for j in range(3):
                k = f"{tag}-{i}-{j}"
                assert fresh.get(k).tolist() == [hash(k) % 997, i, j, 1.0]


def test_query_vectors_are_cached_read_only_and_bounded():
    from ranker.retrieval.retriever import Retriever

    class Counting(HashingEmbedder):
        calls = 0

        def encode(self, texts, *, batch_size=64, progress=False):
            Counting.calls += len(texts)
            return super().encode(texts, batch_size=batch_size, progress=progress)

    emb = Counting()
    r = Retriever(backend=None, embedder=emb, query_cache=2)  # type: ignore[arg-type]
    a = r.embed_query("usb stick")
    assert np.array_equal(a, HashingEmbedder().encode(["usb stick"])[0])
    assert r.embed_query("usb stick") is a and Counting.calls == 1
    with pytest.raises(ValueError):
        a[0] = 1.0  # shared by every request asking the same: nobody may change it
    r.embed_query("laptop")
    r.embed_query("tv")  # the cache holds two: "usb stick" went
    r.embed_query("usb stick")
    assert Counting.calls == 4


def test_other_query_embedders_than_auto_are_honoured():
    from plugin_api.backends import query_embedder_from
    from plugin_api.settings import Settings

    docs = HashingEmbedder()
    assert query_embedder_from(Settings(embedder="hashing"), docs) is docs  # auto: not the minilm model
    assert query_embedder_from(Settings(embedder="hashing", query_embedder="same"), docs) is docs
    assert isinstance(
        query_embedder_from(Settings(embedder="minilm", query_embedder="hashing"), docs), HashingEmbedder
    )
    with pytest.raises(BadInputError, match="choose from"):
        query_embedder_from(Settings(query_embedder="nope"), docs)
