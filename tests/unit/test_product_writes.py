"""Product writes: validated before anything is stored, applied whole, one id pattern everywhere,
and rebuilds that keep every acknowledged write (issue 12, points 1, 7 and 8)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient

from indexer import durable_log
from indexer.catalog import product_from_record, read_catalog
from indexer.embedded.store import EmbeddedStore, upsert_records
from indexer.embedding.embedders import HashingEmbedder
from indexer.errors import BadInputError, IndexMismatchError
from indexer.pipeline import build_index
from indexer.product import ID_PATTERN, Product, check_id
from plugin_api.cli.main import main
from plugin_api.http import schemas
from plugin_api.http.app import create_app
from plugin_api.http.services import build_services
from plugin_api.settings import Settings
from ranker.base import Filters
from ranker.retrieval.embedded import EmbeddedBackend
from tests.conftest import FIXTURES, build_fixture_index

KEY = "test-key-123"
H = {"X-API-Key": KEY}
EMB = HashingEmbedder(dimension=16)


def _catalog(n: int = 5) -> list[Product]:
    return [Product(f"id{i}", f"Product number {i}", brand="Acme", price=float(i)) for i in range(n)]


def _vecs(products, emb=EMB) -> np.ndarray:
    return emb.encode([p.embedding_text() for p in products])


def _backend(tmp_path, n: int = 5) -> EmbeddedBackend:
    store = EmbeddedStore(tmp_path)
    build_index(_catalog(n), store, EMB)
    return EmbeddedBackend(store)


def _log_bytes(store: EmbeddedStore) -> int:
    return (store.root / "versions" / store.current_version() / "updates.jsonl").stat().st_size


def _consistent(backend: EmbeddedBackend) -> None:
    """Every id the backend returns names its own record, and memory equals what is on disk."""
    hits = backend.lexical("product", 100, Filters())
    got = backend.fetch([h.id for h in hits])
    assert all(got[h.id].id == h.id for h in hits)
    disk = EmbeddedStore(backend.store.root).load()
    assert {p.id: p for p in disk.products} == backend.fetch([p.id for p in disk.products])
    assert backend.count() == len(disk.products)
    vecs = backend.vectors([p.id for p in disk.products])
    for p, v in zip(disk.products, disk.vectors, strict=True):
        np.testing.assert_allclose(vecs[p.id], v)


# -- batches ------------------------------------------------------------------------------------
def test_a_batch_with_one_id_twice_is_refused_whole_and_stores_nothing(tmp_path):
    backend = _backend(tmp_path)
    before = _log_bytes(backend.store)
    twice = [Product("new1", "Brand new thing"), Product("id2", "Changed"), Product("new1", "Again")]
    with pytest.raises(BadInputError, match=r"'new1'.*more than once"):
        backend.upsert(twice, _vecs(twice))
    assert _log_bytes(backend.store) == before
    assert backend.fetch(["new1", "id2"])["id2"].title == "Product number 2"
    backend.delete(["id3"])  # a later delete works (it used to 500)
    _consistent(backend)
    after_delete = _log_bytes(backend.store)
    with pytest.raises(BadInputError, match="more than once"):
        backend.store.upsert(twice, _vecs(twice))  # the store on its own refuses it too
    assert _log_bytes(backend.store) == after_delete


def test_a_failed_durable_write_leaves_memory_untouched(tmp_path, monkeypatch):
    backend = _backend(tmp_path)
    new = [Product("id1", "Renamed one"), Product("new9", "Fresh gadget")]

    def disk_full(path, records):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable_log, "append_records", disk_full)
    monkeypatch.setattr("indexer.embedded.store.append_records", disk_full)
    with pytest.raises(OSError):
        backend.upsert(new, _vecs(new))
    with pytest.raises(OSError):
        backend.delete(["id0"])
    assert backend.fetch(["id1", "new9", "id0"]).keys() == {"id1", "id0"}
    assert backend.fetch(["id1"])["id1"].title == "Product number 1"
    monkeypatch.undo()
    backend.upsert(new, _vecs(new))
    _consistent(backend)


def test_a_batch_with_a_bad_vector_stores_nothing(tmp_path):
    backend = _backend(tmp_path)
    before = _log_bytes(backend.store)
    new = [Product("a1", "One"), Product("a2", "Two")]
    vecs = _vecs(new)
    vecs[1, 3] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        backend.upsert(new, vecs)
    assert _log_bytes(backend.store) == before and backend.fetch(["a1", "a2"]) == {}


# -- ids ------------------------------------------------------------------------------------------
BAD_IDS = [
    "a/b",
    "has space",
    "tab\there",
    "nul\x00byte",
    "x" * 10_000,
    "..",
    ".hidden",
    "back\\slash",
    "\x7f",
]
GOOD_IDS = ["sku-1", "A_1.2", "ü-ノート", "x" * 128, "a:b?c#d%e&f", "'quoted'\"", "1"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_ids_are_refused_everywhere(bad):
    with pytest.raises(ValueError, match="product id"):
        check_id(bad)
    with pytest.raises(ValueError, match="product id"):
        product_from_record({"id": bad, "title": "t"})


@pytest.mark.parametrize("good", GOOD_IDS)
def test_good_ids_pass_the_one_pattern(good):
    assert check_id(good) == good
    assert product_from_record({"id": good, "title": "t"}).id == good


def test_the_api_uses_the_same_pattern():
    assert schemas.ID_PATTERN == ID_PATTERN


def test_ids_must_be_text_or_integers():
    assert product_from_record({"id": 42, "title": "t"}).id == "42"
    for odd in (True, 1.5, None, ["x"], {"a": 1}):
        with pytest.raises(ValueError, match="product id"):
            product_from_record({"id": odd, "title": "t"})


def test_a_catalog_row_with_a_bad_id_is_a_reported_bad_row(tmp_path):
    f = tmp_path / "c.jsonl"
    rows = [{"id": "ok1", "title": "fine"}, {"id": "a/b", "title": "slash"}, {"id": "x y", "title": "space"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = read_catalog(f)
    assert [p.id for p in res.products] == ["ok1"]
    assert [(e.line, "product id" in e.reason) for e in res.errors] == [(2, True), (3, True)]


# -- the service ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    return build_fixture_index(tmp_path_factory.mktemp("writes"))


def _settings(root, tmp_path) -> Settings:
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    return Settings(
        data_dir=data, cache_dir=root / "cache", embedder="hashing", api_keys=(KEY,), device="cpu"
    )


@pytest.fixture
def settings(index_dir, tmp_path):
    return _settings(index_dir, tmp_path)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings, build=build_services)) as c:
        yield c


def _served_consistently(client) -> None:
    for q in ("notebook", "printer", "wireless"):
        for hit in client.get("/v1/search", params={"q": q, "k": 20}).json()["results"]:
            assert hit["product"]["id"] == hit["id"]


def test_api_batch_with_a_duplicate_id_is_422_naming_it_and_stores_nothing(client, settings):
    log = settings.embedded_dir / "versions" / EmbeddedStore(settings.embedded_dir).current_version()
    before = (log / "updates.jsonl").stat().st_size
    body = {
        "products": [
            {"id": "69979", "title": "First"},
            {"id": "p02", "title": "x"},
            {"id": "69979", "title": "Second"},
        ]
    }
    r = client.post("/v1/products", json=body, headers=H)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail == [{"field": "products.2", "message": detail[0]["message"]}]
    assert "'69979'" in detail[0]["message"] and "products.0" in detail[0]["message"]
    assert (log / "updates.jsonl").stat().st_size == before
    assert client.get("/v1/recommend/similar/69979").status_code == 404
    assert client.delete("/v1/products/p03", headers=H).status_code == 200
    _served_consistently(client)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_api_refuses_an_id_it_could_not_address_later(client, bad):
    r = client.post("/v1/products", json={"products": [{"id": bad, "title": "Unreachable"}]}, headers=H)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == "products.0" and "product id" in r.json()["detail"][0]["message"]


@pytest.mark.parametrize("good", ["ü-ノート", "a:b?c#d%e&f", "x" * 128, "'q'\""])
def test_every_accepted_id_can_be_read_replaced_and_deleted(client, good):
    r = client.post("/v1/products", json={"products": [{"id": good, "title": "Zyzzyva gizmo"}]}, headers=H)
    assert r.status_code == 200, r.text
    path = f"/v1/products/{quote(good, safe='')}"
    assert client.put(path, json={"title": "Zyzzyva gizmo deluxe"}, headers=H).status_code == 200
    hits = client.get("/v1/search", params={"q": "zyzzyva deluxe"}).json()["results"]
    assert hits[0]["id"] == good and hits[0]["product"]["title"] == "Zyzzyva gizmo deluxe"
    assert client.get(f"/v1/recommend/similar/{quote(good, safe='')}").status_code == 200
    r = client.delete(path, headers=H)
    assert r.status_code == 200 and r.json()["deleted"] == 1
    assert client.delete(path, headers=H).status_code == 404


def test_api_write_survives_a_rebuild_and_the_server_switches_to_it(client, settings, index_dir):
    r = client.put("/v1/products/api1", json={"title": "Quokka espresso machine", "brand": "Acme"}, headers=H)
    assert r.status_code == 200
    assert client.delete("/v1/products/p05", headers=H).status_code == 200
    env = {"SHOPRANK_CACHE_DIR": str(index_dir / "cache"), "SHOPRANK_EMBEDDER": "hashing"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        args = [
            "index",
            "--catalog",
            str(FIXTURES / "catalog.jsonl"),
            "--quiet",
            "--data-dir",
            str(settings.data_dir),
        ]
        assert main(args) == 0
    store = EmbeddedStore(settings.embedded_dir)
    on_disk = {p.id: p for p in store.load().products}
    assert on_disk["api1"].title == "Quokka espresso machine" and "p05" not in on_disk
    services = client.app.state.holder.get()
    services.backend.check_every_s = 0.0  # notice the new CURRENT on the next read
    hits = client.get("/v1/search", params={"q": "quokka espresso"}).json()["results"]
    assert hits[0]["id"] == "api1"
    assert services.backend.manifest() == store.manifest()
    # writes after the switch go to the version that is served, and stay there
    assert client.put("/v1/products/api2", json={"title": "Wombat kettle"}, headers=H).status_code == 200
    assert "api2" in {p.id for p in EmbeddedStore(settings.embedded_dir).load().products}
    assert client.get("/v1/search", params={"q": "wombat kettle"}).json()["results"][0]["id"] == "api2"
    _served_consistently(client)


# -- rebuilds (embedded store) -------------------------------------------------------------------
def test_rebuild_carries_the_live_versions_writes(tmp_path):
    backend = _backend(tmp_path)
    new = [Product("new1", "Gadget made through the API"), Product("id1", "Renamed through the API")]
    backend.upsert(new, _vecs(new))
    backend.delete(["id2"])
    catalog = _catalog(6)  # the catalog export knows nothing of the API writes
    build_index(catalog, EmbeddedStore(tmp_path), EMB)
    got = {p.id: p for p in EmbeddedStore(tmp_path).load().products}
    assert got["new1"].title == "Gadget made through the API"
    assert got["id1"].title == "Renamed through the API"
    assert "id2" not in got and "id5" in got
    # a rebuild after the catalog caught up needs nothing from the log any more
    caught_up = [p for p in catalog if p.id != "id2"] + new
    caught_up = [next(n for n in new if n.id == "id1") if p.id == "id1" else p for p in caught_up]
    build_index(list({p.id: p for p in caught_up}.values()), EmbeddedStore(tmp_path), EMB)
    store = EmbeddedStore(tmp_path)
    assert _log_bytes(store) == 0
    assert {p.id for p in store.load().products} == set(got)


def test_rebuild_with_discard_updates_starts_from_the_catalog(tmp_path):
    backend = _backend(tmp_path)
    backend.upsert([Product("new1", "API only")], _vecs([Product("new1", "API only")]))
    build_index(_catalog(5), EmbeddedStore(tmp_path), EMB, carry_updates=False)
    assert "new1" not in {p.id for p in EmbeddedStore(tmp_path).load().products}


def test_rebuild_with_another_model_reembeds_the_carried_products(tmp_path):
    backend = _backend(tmp_path)
    p = Product("new1", "Gadget made through the API")
    backend.upsert([p], _vecs([p]))
    other = HashingEmbedder(dimension=24)
    build_index(_catalog(5), EmbeddedStore(tmp_path), other)
    snap = EmbeddedStore(tmp_path).load()
    row = [q.id for q in snap.products].index("new1")
    assert snap.vectors.shape == (6, 24)
    np.testing.assert_allclose(snap.vectors[row], _vecs([p], other)[0], atol=1e-6)
    # the store alone cannot re-embed: it refuses, and the live version stays
    live = EmbeddedStore(tmp_path).current_version()
    cat = _catalog(5)
    with pytest.raises(IndexMismatchError, match="re-embed"):
        EmbeddedStore(tmp_path).build(
            cat, _vecs(cat), replace(snap.manifest, catalog_hash="x", dimension=16, model_id="m2")
        )
    assert EmbeddedStore(tmp_path).current_version() == live


def test_running_backend_picks_up_another_processes_build_and_writes_to_it(tmp_path):
    backend = _backend(tmp_path)
    backend.check_every_s = 0.0
    other = EmbeddedStore(tmp_path)  # another process: its own store object
    bigger = _catalog(8)
    build_index(bigger, other, EMB)
    assert backend.count() == 8 or backend.lexical("product", 100, Filters())  # a read notices
    assert backend.count() == 8
    assert backend.fetch(["id7"])["id7"].title == "Product number 7"
    p = Product("late", "Written after the switch")
    backend.upsert([p], _vecs([p]))
    assert "late" in {q.id for q in EmbeddedStore(tmp_path).load().products}
    _consistent(backend)


def test_writes_check_for_a_new_version_even_between_read_checks(tmp_path):
    backend = _backend(tmp_path)
    backend.check_every_s = 3600.0  # reads would not look again for an hour
    build_index(_catalog(7), EmbeddedStore(tmp_path), EMB)
    p = Product("late", "Written after the switch")
    backend.upsert([p], _vecs([p]))
    assert backend.count() == 8 and backend.fetch(["id6", "late"]).keys() == {"id6", "late"}
    _consistent(backend)


def test_another_processes_upsert_is_seen_by_a_running_backend(tmp_path):
    backend = _backend(tmp_path)
    backend.check_every_s = 0.0
    p = Product("cli1", "Upserted by the command line")
    EmbeddedStore(tmp_path).upsert([p], _vecs([p]))
    assert backend.fetch(["cli1"])["cli1"].title == "Upserted by the command line"
    _consistent(backend)


def test_a_running_backend_refuses_a_version_built_with_another_model(tmp_path):
    backend = _backend(tmp_path)
    backend.check_every_s = 0.0
    build_index(_catalog(6), EmbeddedStore(tmp_path), HashingEmbedder(dimension=24))
    assert backend.count() == 5  # keeps serving what its embedder fits
    p = Product("late", "Written after the switch")
    with pytest.raises(IndexMismatchError, match="restart"):
        backend.upsert([p], _vecs([p]))
    assert "late" not in {q.id for q in EmbeddedStore(tmp_path).load().products}


# -- the command line ------------------------------------------------------------------------------
def test_cli_upsert_reports_bad_ids_and_delete_removes_ids_stored_before_the_rule(settings, capsys):
    store = EmbeddedStore(settings.embedded_dir)
    legacy = Product("old id/1", "Stored before ids had a rule")
    with store.locked():
        store.append(
            store.current_version(), upsert_records([legacy], _vecs([legacy], HashingEmbedder(dimension=64)))
        )
    assert "old id/1" in {p.id for p in store.load().products}  # stored data still loads
    f = settings.data_dir.parent / "upsert.jsonl"
    f.write_text(
        json.dumps({"id": "ok-1", "title": "Fine"}) + "\n" + json.dumps({"id": "a b", "title": "x"}) + "\n"
    )
    common = ["--data-dir", str(settings.data_dir)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPRANK_EMBEDDER", "hashing")
        mp.setenv("SHOPRANK_CACHE_DIR", str(settings.cache_dir))
        assert main(["upsert", "--catalog", str(f), *common]) == 1  # the bad row reported, the good stored
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out == {"upserted": 1, "bad_rows": 1, "failed": 0}
        assert main(["delete", "old id/1", *common]) == 0
        args = [
            "index",
            "--catalog",
            str(FIXTURES / "catalog.jsonl"),
            "--quiet",
            "--discard-updates",
            *common,
        ]
        assert main(args) == 0
    ids = {p.id for p in EmbeddedStore(settings.embedded_dir).load().products}
    assert "old id/1" not in ids and "ok-1" not in ids and len(ids) == 30
