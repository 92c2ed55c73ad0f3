"""Writes that never stall reads (issue 15, point 2): a product write rebuilds only a small delta
segment, scored with the statistics of the whole index; a background merge folds it into the
base; another process's writes are read from the log's tail; a hammer of writes during reads
never shows a half-written product and every acknowledged write is visible at once."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from indexer.embedded.store import EmbeddedStore
from indexer.embedding.embedders import HashingEmbedder
from indexer.pipeline import build_index
from indexer.product import Product
from ranker.base import Filters
from ranker.retrieval import segments
from ranker.retrieval.bm25 import BestFieldBM25, BM25Index
from ranker.retrieval.embedded import EmbeddedBackend
from ranker.retrieval.segments import analyze_product

EMB = HashingEmbedder(dimension=16)
WORDS = [
    "red",
    "blue",
    "green",
    "camera",
    "laptop",
    "bag",
    "cable",
    "charger",
    "lens",
    "tripod",
    "mouse",
    "screen",
]


def _product(i: int, words: str | None = None, price: float | None = None) -> Product:
    text = words or " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7))
    return Product(
        f"p{i}", f"{text} model {i}", brand=f"brand{i % 4}", price=float(i if price is None else price)
    )


def _vecs(products) -> np.ndarray:
    return EMB.encode([p.embedding_text() for p in products])


def _backend(tmp_path, n: int = 40, **kw) -> EmbeddedBackend:
    store = EmbeddedStore(tmp_path)
    cat = [_product(i) for i in range(n)]
    build_index(cat, store, EMB)
    return EmbeddedBackend(store, **kw)


def _answers(
    backend: EmbeddedBackend, filters: Filters | None = None, n: int = 10
) -> dict[str, list[tuple[str, float]]]:
    filters = filters or Filters()
    out = {}
    for q in ("camera bag", "red laptop", "model", "tripod", "charger cable"):
        out[f"lex:{q}"] = [(s.id, round(s.score, 4)) for s in backend.lexical(q, n, filters)]
        out[f"strict:{q}"] = [(s.id, round(s.score, 4)) for s in backend.strict_lexical(q, n, filters)]
    out["knn"] = [(s.id, round(s.score, 4)) for s in backend.knn(_vecs([_product(3)])[0], n, filters)]
    return out


# -- a document scored against an index scores as in one index built with it ----------------------
def test_one_more_document_scores_as_in_an_index_built_with_it():
    docs = [analyze_product(_product(i)) for i in range(30)]
    docs.append(analyze_product(_product(99, "zorblax camera camera")))  # a word the index lacks
    boosts = {"title": 2.0, "brand": 1.0, "all_text": 1.0}
    for k in (3, 17, 30):  # doc k, scored against an index of the others
        others = docs[:k] + docs[k + 1 :]
        whole = BM25Index([*others, docs[k]], boosts)
        got = BM25Index(others, boosts).document_scores(docs[k])
        for q in set(docs[k]["title"]) | {"brand1"}:
            assert got.get(q, 0.0) == pytest.approx(float(whole.scores([q])[-1]), rel=1e-5), q
        strict_whole = BestFieldBM25([*others, docs[k]], ["title", "brand"])
        strict_got = BestFieldBM25(others, ["title", "brand"]).document_scores(docs[k])
        for q in set(docs[k]["title"]) | {"brand1", "unseen"}:
            score, match = strict_whole.scores([q])
            assert (q in strict_got) == bool(match[-1]), q
            assert strict_got.get(q, 0.0) == pytest.approx(float(score[-1]), rel=1e-5), q


# -- writes go to the delta; the base stays ---------------------------------------------------------
def test_a_write_keeps_the_base_and_a_merge_gives_what_a_fresh_load_gives(tmp_path):
    backend = _backend(tmp_path, merge_min=10_000)  # no background merge in this test
    base = backend._view.base
    new = [_product(100, "tripod camera bag"), _product(5, "green charger cable", price=99.0)]
    backend.upsert(new, _vecs(new))
    backend.delete(["p7", "p8"])
    view = backend._view
    assert view.base is base  # nothing was rebuilt but the delta
    assert len(view.delta) == 2 and view.dead.sum() == 3 and len(view) == 39
    assert backend.fetch(["p5"])["p5"].price == 99.0 and not backend.fetch(["p7", "p8"])
    lex = [s.id for s in backend.lexical("tripod camera bag", 5, Filters())]
    assert lex[0] == "p100"
    assert [s.id for s in backend.lexical("charger", 50, Filters(price_min=50))] == ["p5"]
    assert backend.vectors(["p5"])["p5"] == pytest.approx(_vecs([new[1]])[0])
    before_merge = {k: {i for i, _ in v} for k, v in _answers(backend, n=100).items()}

    backend.merge()
    assert backend._view.base is not base and not len(backend._view.delta) and not backend._view.dead.any()
    fresh = EmbeddedBackend(EmbeddedStore(tmp_path))
    assert _answers(backend) == _answers(fresh)
    assert _answers(backend, Filters(brands=("brand1",))) == _answers(fresh, Filters(brands=("brand1",)))
    # before the merge, base rows are scored with the base's statistics, so scores and order may
    # move a little at the merge; what matches may not
    assert before_merge == {k: {i for i, _ in v} for k, v in _answers(fresh, n=100).items()}


def test_a_background_merge_starts_when_the_delta_grows_and_loses_no_write(tmp_path):
    backend = _backend(tmp_path, merge_min=5, merge_fraction=0.0)
    base = backend._view.base
    for i in range(40, 52):  # some writes land while the merge runs; it replays them
        p = _product(i, "lens tripod")
        backend.upsert([p], _vecs([p]))
    deadline = time.monotonic() + 10
    while backend._view.base is base and time.monotonic() < deadline:
        time.sleep(0.01)
    with backend._merging:  # wait for the merge that runs to finish
        pass
    assert backend._view.base is not base
    assert backend.count() == 52
    assert {f"p{i}" for i in range(52)} == set(backend.fetch([f"p{i}" for i in range(52)]))
    assert {s.id for s in backend.strict_lexical("lens tripod", 100, Filters())} >= {
        f"p{i}" for i in range(40, 52)
    }


def test_another_processes_writes_are_read_from_the_log_tail_not_reloaded(tmp_path):
    backend = _backend(tmp_path, merge_min=10_000)
    backend.check_every_s = 0.0
    base = backend._view.base
    other = EmbeddedBackend(EmbeddedStore(tmp_path))  # another worker on the same index
    p = _product(200, "screen mouse")
    other.upsert([p], _vecs([p]))
    other.delete(["p1"])
    assert backend.fetch(["p200"])["p200"].title == p.title and not backend.fetch(["p1"])
    assert backend._view.base is base  # applied as a delta
    assert backend._view.stamp == backend.store.stamp()
    q = _product(201, "lens cable")
    backend.upsert([q], _vecs([q]))  # and this process's next write lands after the other's
    other.check_every_s = 0.0
    assert set(other.fetch(["p200", "p201", "p1"])) == {"p200", "p201"}
    assert set(EmbeddedStore(tmp_path).load().products[i].id for i in range(-2, 0)) == {"p200", "p201"}


def test_a_read_never_waits_while_another_workers_writes_are_applied(tmp_path):
    """With ``check_every_s`` > 0 the look at the disk runs in a background thread: a read that
    starts it answers from the view it has, even while applying the writes takes long."""
    backend = _backend(tmp_path, merge_min=10_000)
    backend.check_every_s = 0.05
    other = EmbeddedBackend(EmbeddedStore(tmp_path))
    p = _product(300, "screen mouse")
    other.upsert([p], _vecs([p]))
    gate = threading.Event()
    tail = backend.store.writes_since

    def slow_tail(version, offset):
        gate.wait(30)  # applying another worker's writes takes as long as the test says
        return tail(version, offset)

    backend.store.writes_since = slow_tail  # type: ignore[method-assign]
    time.sleep(0.06)
    t0 = time.perf_counter()
    assert not backend.fetch(["p300"])  # answered at once, from the view it had
    assert time.perf_counter() - t0 < 5
    gate.set()
    deadline = time.monotonic() + 10
    while not backend.fetch(["p300"]) and time.monotonic() < deadline:
        time.sleep(0.06)
    assert backend.fetch(["p300"])["p300"].title == p.title


# -- a price or stock write patches its base row ------------------------------------------------------
FILTERS = (
    Filters(),
    Filters(price_min=500),
    Filters(price_max=10),
    Filters(in_stock=True),
    Filters(brands=("brand1",), price_min=1),
)


def test_a_price_or_stock_write_patches_its_base_row_and_serves_what_a_fresh_load_serves(tmp_path):
    """A write that leaves a product's text, vector and EANs as they were changes its record
    only: no delta row, no masked base row, no merge to come, and every answer (filters on the
    new price and stock included) is the one a fresh load of the same log gives."""
    backend = _backend(tmp_path, merge_min=10_000)
    base = backend._view.base
    p5, p9 = (backend.fetch(["p5", "p9"])[i] for i in ("p5", "p9"))
    new = [replace(p5, price=999.0, in_stock=False), replace(p9, price=1.5, in_stock=True)]
    backend.upsert(new, _vecs(new))
    view = backend._view
    assert view.base is base and not len(view.delta) and not view.dead.any() and not view.pending
    assert len(view.patches) == 2
    assert backend.fetch(["p5"])["p5"].price == 999.0
    assert "p5" in [s.id for s in backend.lexical(p5.title, 40, Filters(price_min=500))]
    assert "p5" not in [s.id for s in backend.lexical(p5.title, 40, Filters(in_stock=True))]
    fresh = EmbeddedBackend(EmbeddedStore(tmp_path))
    for f in FILTERS:
        assert _answers(backend, f, n=40) == _answers(fresh, f, n=40), f

    # a text change goes to the delta; writing the base's text back serves the base row again
    changed = replace(p5, title="zorblax tripod", price=5.0)
    backend.upsert([changed], _vecs([changed]))
    assert len(backend._view.delta) == 1 and backend._view.dead.sum() == 1
    assert list(backend._view.patches.records) == [backend._view.base.pos["p9"]]
    back = replace(p5, price=7.0)
    backend.upsert([back], _vecs([back]))
    view = backend._view
    assert not len(view.delta) and not view.dead.any() and len(view.patches) == 2
    assert backend.fetch(["p5"])["p5"].price == 7.0
    fresh = EmbeddedBackend(EmbeddedStore(tmp_path))
    for f in FILTERS:
        assert _answers(backend, f, n=40) == _answers(fresh, f, n=40), f
    # a new EAN is indexed (EAN lookups), so it is not a patch
    eaned = replace(p9, ean=("4006381333931",))
    backend.upsert([eaned], _vecs([eaned]))
    assert len(backend._view.delta) == 1 and len(backend._view.patches) == 1
    assert backend.ids_for_eans(["4006381333931"]) == {"4006381333931": "p9"}
    assert backend._replay is None  # no merge runs, so no write is kept for one


def test_patches_fold_into_the_base_records_sharing_its_indexes(tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "FOLD_PATCHES", 3)
    backend = _backend(tmp_path, merge_min=10_000)
    base = backend._view.base
    for i, pid in enumerate(["p1", "p2", "p3", "p4"]):
        p = replace(backend.fetch([pid])[pid], price=100.0 + i, in_stock=bool(i % 2))
        backend.upsert([p], _vecs([p]))
    view = backend._view
    assert view.base is not base and view.base.bm25 is base.bm25 and view.base.strict is base.strict
    assert len(view.patches) == 1  # p4, written after the fold
    assert base.products[1].price == 1.0  # the old base (a view served before) is unchanged
    fresh = EmbeddedBackend(EmbeddedStore(tmp_path))
    for f in FILTERS:
        assert _answers(backend, f, n=40) == _answers(fresh, f, n=40), f
    assert backend.fetch(["p1", "p4"]) == fresh.fetch(["p1", "p4"])


def test_a_merge_keeps_the_patches_written_before_and_during_it(tmp_path):
    backend = _backend(tmp_path, merge_min=10_000)
    new = _product(100, "tripod camera bag")
    backend.upsert([new], _vecs([new]))  # something for the merge to fold
    p = replace(backend.fetch(["p6"])["p6"], price=321.0)
    backend.upsert([p], _vecs([p]))
    gate, started = threading.Event(), threading.Event()
    merged = segments.View.merged

    def slow_merged(view):
        started.set()
        gate.wait(30)
        return merged(view)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(segments.View, "merged", slow_merged)
        t = threading.Thread(target=backend.merge)
        t.start()
        started.wait(10)
        q = replace(backend.fetch(["p8"])["p8"], price=654.0, in_stock=False)
        backend.upsert([q], _vecs([q]))  # written while the merge runs: replayed onto its base
        gate.set()
        t.join(30)
    view = backend._view
    assert not len(view.delta) and backend._replay is None
    assert backend.fetch(["p6", "p8"]) == EmbeddedBackend(EmbeddedStore(tmp_path)).fetch(["p6", "p8"])
    assert backend.fetch(["p8"])["p8"].price == 654.0 and backend.fetch(["p6"])["p6"].price == 321.0


# -- the hammer --------------------------------------------------------------------------------------
def test_upserts_hammered_during_reads_are_visible_at_once_and_never_half_written(tmp_path):
    """A writer rewrites products, each write naming its round in the title *and* the price; four
    readers search all the while (background merges run too). Every acknowledged write is what
    the next read returns, and no read ever sees a product whose title and price disagree."""
    backend = _backend(tmp_path, n=60, merge_min=20, merge_fraction=0.0)
    stop = threading.Event()
    problems: list[str] = []
    acked: dict[str, int] = {}

    def check(p: Product) -> None:
        round_in_title = int(p.title.split("round")[1]) if "round" in p.title else None
        if round_in_title is not None and p.price != float(round_in_title):
            problems.append(f"{p.id}: title {p.title!r} but price {p.price}")

    def reader() -> None:
        while not stop.is_set():
            hits = backend.lexical("round camera", 50, Filters())
            for p in backend.fetch([h.id for h in hits]).values():
                check(p)
            for s in backend.strict_lexical("camera", 20, Filters()):
                if backend.fetch([s.id]) == {}:
                    continue  # deleted since: fine
            backend.knn(_vecs([_product(1)])[0], 10, Filters(price_min=0))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for r in range(1, 121):
            pid = f"p{r % 30}"
            p = Product(pid, f"camera round{r}", brand="brandx", price=float(r))
            backend.upsert([p], _vecs([p]))
            acked[pid] = r
            got = backend.fetch([pid])[pid]  # visible at once, whole
            assert got.title == f"camera round{r}" and got.price == float(r)
            assert pid in {s.id for s in backend.strict_lexical(f"round{r}", 5, Filters())}
            if r % 40 == 0:
                backend.delete([f"p{30 + r // 40}"])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not problems, problems[:5]
    final = backend.fetch(list(acked))
    assert {pid: int(p.title.split("round")[1]) for pid, p in final.items()} == acked
    # and what is served equals what a fresh load of the log gives
    fresh = EmbeddedBackend(EmbeddedStore(tmp_path))
    ids = [f"p{i}" for i in range(60)]
    assert backend.fetch(ids) == fresh.fetch(ids)
    assert backend.count() == fresh.count() == 57
