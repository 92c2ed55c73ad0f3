import json
import pickle

import numpy as np
import pytest

from indexer.analysis import ANALYZER_VERSION
from indexer.embedded.store import EmbeddedStore
from indexer.embedding.embedders import HashingEmbedder
from indexer.errors import BadInputError, IndexMismatchError, NotFoundError
from indexer.manifest import Manifest
from indexer.pipeline import build_index
from indexer.product import Product, catalog_hash
from ranker.retrieval.embedded import EmbeddedBackend

EMB = HashingEmbedder(dimension=16)


def _products(n=5):
    return [Product(f"id{i}", f"Product number {i}", brand="Acme", price=float(i)) for i in range(n)]


def _manifest(products, dim=16):
    return Manifest(
        "embedded-index", EMB.model_id, dim, catalog_hash(products), len(products), ANALYZER_VERSION
    )


def test_build_switches_current_and_keeps_one_old_version(tmp_path):
    store = EmbeddedStore(tmp_path, keep_old=1)
    assert store.manifest() is None
    versions = []
    for n in (3, 4, 5):
        build_index(_products(n), store, EMB)
        versions.append(store.current_version())
        assert len(store.load().products) == n
    on_disk = sorted(p.name for p in (tmp_path / "versions").iterdir())
    assert on_disk == versions[1:]  # the oldest was pruned, the previous one kept for rollback
    m = store.manifest()
    assert m.documents == 5 and m.model_id == EMB.model_id and m.catalog_hash == catalog_hash(_products(5))


def test_failed_build_loses_nothing(tmp_path):
    store = EmbeddedStore(tmp_path)
    build_index(_products(3), store, EMB)
    before = store.current_version()
    bad = np.zeros((4, 8), dtype=np.float32)  # wrong dimension
    with pytest.raises(BadInputError, match="8-d but the index is 16-d"):
        store.build(_products(4), bad, _manifest(_products(4)))
    nan = np.full((4, 16), np.nan, dtype=np.float32)
    with pytest.raises(BadInputError, match="NaN"):
        store.build(_products(4), nan, _manifest(_products(4)))
    assert store.current_version() == before and len(store.load().products) == 3
    assert [p.name for p in (tmp_path / "versions").iterdir()] == [before]


def test_upsert_delete_log_survives_reload(tmp_path):
    store = EmbeddedStore(tmp_path)
    build_index(_products(3), store, EMB)
    backend = EmbeddedBackend(store)
    new = Product("id9", "Shiny new gadget", brand="Acme", price=9.0)
    changed = Product("id1", "Renamed product one", brand="Acme", price=1.5)
    backend.upsert([new, changed], EMB.encode([new.embedding_text(), changed.embedding_text()]))
    rep = backend.delete(["id0", "missing"])
    assert rep.deleted == 1 and [e.id for e in rep.errors] == ["missing"]
    # A second process (or a restart) sees exactly the same state from disk.
    snap = EmbeddedStore(tmp_path).load()
    assert sorted(p.id for p in snap.products) == ["id1", "id2", "id9"]
    assert {p.id: p.title for p in snap.products}["id1"] == "Renamed product one"
    assert snap.vectors.shape == (3, 16)
    reloaded = EmbeddedBackend(EmbeddedStore(tmp_path))
    assert [s.id for s in reloaded.lexical("gadget", 5, backend_filters())] == ["id9"]


def test_replaying_the_log_gives_each_row_its_last_write(tmp_path):
    """The log replayed onto the built matrix in place (not copied row by row): updated rows keep
    their place with their new vector, new rows come after, deleted ones go, a deleted then
    re-written row comes back where it was."""
    store = EmbeddedStore(tmp_path)
    base = _products(5)
    build_index(base, store, EMB)
    built = store.load().vectors.copy()
    writes = [
        Product("id1", "Renamed product one", brand="Acme", price=1.5),
        Product("id7", "Brand new", brand="Acme"),
        Product("id8", "Another new", brand="Acme"),
    ]
    vec = EMB.encode([p.embedding_text() for p in writes])
    store.upsert(writes, vec)
    store.delete(["id3", "id8", "id4"])
    store.upsert([Product("id4", "Back again", brand="Acme")], EMB.encode(["Back again"]))
    snap = store.load()
    assert [p.id for p in snap.products] == ["id0", "id1", "id2", "id4", "id7"]
    assert [p.title for p in snap.products][1::2] == ["Renamed product one", "Back again"]
    assert snap.vectors.dtype == np.float32
    np.testing.assert_array_equal(snap.vectors[[0, 2]], built[[0, 2]])
    np.testing.assert_array_equal(snap.vectors[1], vec[0])
    np.testing.assert_array_equal(snap.vectors[3], EMB.encode(["Back again"])[0])
    np.testing.assert_array_equal(snap.vectors[4], vec[1])
    assert store.load().products == snap.products  # reading again changes nothing on disk


def test_a_catalog_read_shares_equal_short_strings(tmp_path):
    store = EmbeddedStore(tmp_path)
    products = [
        Product(f"id{i}", f"Product {i}", brand="Acme", category="Cables", attributes={"colour": "Black"})
        for i in range(3)
    ]
    build_index(products, store, EMB)
    got = store.load().products
    assert got == products  # the same values
    assert len({id(p.brand) for p in got}) == 1 and len({id(p.category) for p in got}) == 1
    assert len({id(next(iter(p.attributes))) for p in got}) == 1
    assert len({id(p.attributes["colour"]) for p in got}) == 1
    assert catalog_hash(got) == catalog_hash(products)
    a = got[0].attributes
    assert a == {"colour": "Black"} and a.get("size") is None
    assert {"colour": "Black"} == a  # noqa: SIM300 (a dict on the left: the reflected comparison)
    assert got[1].attributes._names is a._names  # the names held once for the catalog
    with pytest.raises(TypeError):
        a["colour"] = "Red"  # read-only, as a frozen product's attributes should be
    assert pickle.loads(pickle.dumps(got[0])) == got[0]
    assert Product.from_dict(got[0].to_dict()) == got[0]


def backend_filters():
    from ranker.base import Filters

    return Filters()


def test_torn_last_log_line_is_ignored(tmp_path):
    store = EmbeddedStore(tmp_path)
    build_index(_products(2), store, EMB)
    log = tmp_path / "versions" / store.current_version() / "updates.jsonl"
    log.write_text(json.dumps({"op": "delete", "id": "id0"}) + "\n" + '{"op": "upsert", "prod')
    assert [p.id for p in store.load().products] == ["id1"]


def test_missing_and_damaged_index(tmp_path):
    with pytest.raises(NotFoundError, match="shoprank index"):
        EmbeddedStore(tmp_path / "none").load()
    store = EmbeddedStore(tmp_path)
    build_index(_products(2), store, EMB)
    vdir = tmp_path / "versions" / store.current_version()
    np.save(vdir / "vectors.npy", np.zeros((5, 16), dtype=np.float32))
    with pytest.raises(IndexMismatchError, match="do not fit"):
        store.load()
    # A product file edited after the build no longer matches the manifest's catalog hash.
    good = (vdir / "products.jsonl").read_text()
    (vdir / "products.jsonl").write_text(good.replace("Product number 1", "Product number 7"))
    with pytest.raises(IndexMismatchError, match="catalog hash"):
        store.load()
    (vdir / "products.jsonl").write_text(good)
    (vdir / "manifest.json").write_text("{")
    with pytest.raises(IndexMismatchError, match="corrupt manifest"):
        store.load()


def test_manifest_check_messages():
    m = _manifest(_products(1))
    m.check(model_id=EMB.model_id, dimension=16, analyzer_version=ANALYZER_VERSION)
    with pytest.raises(IndexMismatchError, match="re-index"):
        m.check(model_id="other-model", dimension=16, analyzer_version=ANALYZER_VERSION)
    with pytest.raises(IndexMismatchError, match="analyzer version"):
        m.check(model_id=EMB.model_id, dimension=16, analyzer_version=ANALYZER_VERSION + 1)
    with pytest.raises(IndexMismatchError, match="incomplete or corrupt"):
        Manifest.from_dict({"kind": "x"})


def test_a_batch_is_one_log_line_so_a_torn_batch_is_skipped_whole(tmp_path):
    store = EmbeddedStore(tmp_path)
    build_index(_products(2), store, EMB)
    batch = [Product(f"new{i}", f"New product {i}") for i in range(3)]
    store.upsert(batch, EMB.encode([p.embedding_text() for p in batch]))
    log = tmp_path / "versions" / store.current_version() / "updates.jsonl"
    assert len(log.read_text().splitlines()) == 1
    with open(log, "r+b") as fh:  # a crash mid-append: the batch's line is cut short
        fh.truncate(log.stat().st_size - 20)
    assert [p.id for p in store.load().products] == ["id0", "id1"]
    store.upsert(batch[:1], EMB.encode([batch[0].embedding_text()]))  # the next append still counts
    assert [p.id for p in store.load().products] == ["id0", "id1", "new0"]


def test_a_failed_append_is_cut_back(tmp_path, monkeypatch):
    import indexer.embedded.store as es

    store = EmbeddedStore(tmp_path)
    build_index(_products(2), store, EMB)
    log = tmp_path / "versions" / store.current_version() / "updates.jsonl"

    def half_then_fail(path, records):
        with open(path, "ab") as fh:
            fh.write(b'{"op": "batch", "records": [{"op": "del')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(es, "append_records", half_then_fail)
    with pytest.raises(OSError):
        store.delete(["id0"])
    assert log.stat().st_size == 0 and len(store.load().products) == 2


def test_prune_leaves_a_running_build_alone(tmp_path):
    import fcntl

    store = EmbeddedStore(tmp_path)
    build_index(_products(2), store, EMB)
    running = tmp_path / "versions" / "v-20000101T000000000000Z.tmp"
    running.mkdir()
    stale = tmp_path / "versions" / "v-19990101T000000000000Z.tmp"
    stale.mkdir()
    with open(running / ".building", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # another process is still writing this version
        build_index(_products(3), store, EMB)
        assert running.exists() and not stale.exists()
    build_index(_products(3), store, EMB)  # that build died: its folder goes now
    assert not running.exists()
