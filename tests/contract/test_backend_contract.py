"""One contract, every backend: the embedded index and a real OpenSearch node answer alike.

The OpenSearch half needs a node (``scripts/opensearch start``) and is skipped without one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest

from indexer.analysis import analyze, raw_tokens
from indexer.embedding.embedders import HashingEmbedder
from indexer.errors import BadInputError, IndexMismatchError
from indexer.pipeline import build_index, check_compatible
from indexer.product import Product
from indexer.schema import text_fields
from ranker.base import Filters, Mode, SearchRequest
from ranker.retrieval.retriever import Retriever
from tests.conftest import opensearch_available, opensearch_url

EMBEDDER = HashingEmbedder(dimension=64)
BACKENDS = ["embedded", pytest.param("opensearch", marks=pytest.mark.integration)]


@dataclass
class Bench:
    retriever: Retriever
    writer: Any  # upsert(products, vectors) / delete(ids)
    products: list[Product]
    store: Any  # the IndexStore a rebuild (`shoprank index`) writes to

    def search(self, q: str, **kw: Any) -> list[str]:
        return [h.id for h in self.retriever.search(SearchRequest(q, **kw)).hits]

    def upsert(self, products: list[Product]) -> None:
        self.writer.upsert(products, EMBEDDER.encode([p.embedding_text() for p in products]))


def _open(kind: str, products: list[Product], tmp_path_factory) -> Iterator[Bench]:
    if kind == "embedded":
        from indexer.embedded.store import EmbeddedStore
        from ranker.retrieval.embedded import EmbeddedBackend

        store = EmbeddedStore(tmp_path_factory.mktemp("embedded"))
        build_index(products, store, EMBEDDER)
        backend = EmbeddedBackend(store, check_every_s=0.0)  # notices another build at once
        yield Bench(Retriever(backend, EMBEDDER), backend, products, EmbeddedStore(store.root))
        return
    if not opensearch_available():
        pytest.skip(f"no OpenSearch node at {opensearch_url()}; start one with scripts/opensearch start")
    from indexer.opensearch.client import make_client
    from indexer.opensearch.store import OpenSearchStore
    from ranker.retrieval.opensearch import OpenSearchBackend

    client = make_client(opensearch_url(), timeout=30)
    alias = f"shoprank-contract-{uuid.uuid4().hex[:8]}"
    store = OpenSearchStore(client, alias=alias)
    try:
        rep = build_index(products, store, EMBEDDER)
        assert rep.write.ok, rep.write.errors
        yield Bench(Retriever(OpenSearchBackend(client, alias=alias), EMBEDDER), store, products, store)
    finally:
        store.drop()


@pytest.fixture(scope="module", params=BACKENDS)
def bench(request, fixture_products, tmp_path_factory) -> Iterator[Bench]:
    yield from _open(request.param, fixture_products, tmp_path_factory)


@pytest.fixture(params=BACKENDS)
def fresh(request, fixture_products, tmp_path_factory) -> Iterator[Bench]:
    yield from _open(request.param, fixture_products, tmp_path_factory)


def test_bm25_finds_exact_title_words(bench):
    assert bench.search("ThinkPad", mode="bm25")[0] == "p01"
    assert bench.search("toner cartridge xerox", mode="bm25")[0] == "p15"


def test_plural_accent_and_case_folding(bench):
    assert bench.search("CAFE CREME", mode="bm25")[0] == "p27"
    assert bench.search("printers", mode="bm25")[:2] == bench.search("printer", mode="bm25")[:2]


def test_results_are_ranked_and_k_is_respected(bench):
    for mode in Mode:
        res = bench.retriever.search(SearchRequest("black wireless headphones", k=5, mode=mode))
        assert 0 < len(res.hits) <= 5
        assert [h.rank for h in res.hits] == list(range(1, len(res.hits) + 1))
        scores = [h.score for h in res.hits]
        assert scores == sorted(scores, reverse=True)
        assert all(h.product is not None and h.product.id == h.id for h in res.hits)


def test_vector_mode_returns_cosine(bench):
    target = next(p for p in bench.products if p.id == "p26")
    res = bench.retriever.search(SearchRequest(target.embedding_text(), k=3, mode="vector"))
    assert res.hits[0].id == "p26"
    assert res.hits[0].sources["vector"].score == pytest.approx(1.0, abs=1e-3)


def test_hybrid_has_every_source_score_for_every_hit(bench):
    res = bench.retriever.search(SearchRequest("samsung phone", k=8, mode="hybrid"))
    assert res.hits
    q = EMBEDDER.encode(["samsung phone"])[0]
    vecs = EMBEDDER.encode([h.product.embedding_text() for h in res.hits])
    for h, v in zip(res.hits, vecs, strict=True):
        assert set(h.sources) == {"bm25", "vector"}
        assert h.sources["bm25"].score is not None and h.sources["vector"].score is not None
        assert h.sources["vector"].score == pytest.approx(float(np.dot(q, v)), abs=1e-3)
        assert any(s.rank is not None for s in h.sources.values())
    assert res.hits[0].id in {"p30", "p29", "p05"}


@pytest.mark.parametrize("mode", list(Mode))
def test_filters_apply_inside_every_mode(bench, mode):
    by_id = {p.id: p for p in bench.products}
    f = Filters(brands=("logitech",))
    ids = bench.search("wireless", k=20, mode=mode, filters=f)
    assert ids and all(by_id[i].brand == "Logitech" for i in ids)
    f = Filters(price_min=50, price_max=150)
    ids = bench.search("drive printer speaker", k=30, mode=mode, filters=f)
    assert ids and all(50 <= by_id[i].price <= 150 for i in ids)
    f = Filters(in_stock=True)
    ids = bench.search("phone", k=30, mode=mode, filters=f)
    assert ids and all(by_id[i].in_stock is not False for i in ids)
    # Filters narrow the candidates before top-k: a k=1 search still finds the one match.
    assert bench.search("notebook", k=1, mode=mode, filters=Filters(brands=("Kensington",))) == ["p18"]


@pytest.mark.parametrize(
    "text", ["*:*", "title:foo AND brand:bar", '{"match_all": {}}', '"unbalanced', "ütf-8 ✓ 🙂", "a" * 900]
)
def test_user_text_is_data(bench, text):
    for mode in Mode:
        res = bench.retriever.search(SearchRequest(text, k=10, mode=mode))
        assert len(res.hits) <= 10
    assert bench.search("*:*", mode="bm25") == []


def test_bad_requests_are_refused():
    with pytest.raises(BadInputError, match="query is empty"):
        SearchRequest("  ")
    with pytest.raises(BadInputError, match="k must be"):
        SearchRequest("x", k=0)
    with pytest.raises(BadInputError, match="choose from bm25, vector, hybrid"):
        SearchRequest("x", mode="fuzzy")
    with pytest.raises(BadInputError, match="price_min"):
        Filters(price_min=10, price_max=5)


def test_manifest_refuses_another_model(bench):
    m = bench.retriever.backend.manifest()
    assert m is not None and m.model_id == EMBEDDER.model_id and m.dimension == 64
    check_compatible(m, EMBEDDER, "index")
    with pytest.raises(IndexMismatchError, match="re-index"):
        check_compatible(m, HashingEmbedder(dimension=32), "index")


def test_upsert_and_delete_are_searchable(fresh):
    new = Product("n1", "Acme Zephyr notebook 13", "ultralight", "Acme", "Notebook", 499.0)
    fresh.upsert([new])
    assert fresh.search("laptops", mode="bm25", k=30).count("n1") == 1  # via synonyms + stemming
    changed = replace(next(p for p in fresh.products if p.id == "p09"), title="Logitech Quasar trackball")
    fresh.upsert([changed])
    assert fresh.search("quasar trackball", mode="bm25")[0] == "p09"
    assert fresh.retriever.backend.fetch(["p09"])["p09"].title == "Logitech Quasar trackball"
    rep = fresh.writer.delete(["p09", "does-not-exist"])
    assert rep.deleted == 1 and [e.id for e in rep.errors] == ["does-not-exist"]
    assert "p09" not in fresh.search("quasar trackball", mode="hybrid", k=30)
    assert fresh.retriever.backend.fetch(["p09"]) == {}
    assert fresh.retriever.backend.count() == len(fresh.products)  # +1 new, -1 deleted


def _terms(p: Product) -> set[str]:
    return {t for text in text_fields(p).values() for t in analyze(text or "")}


@pytest.mark.parametrize(
    "query,found",
    [("wireless logitech", True), ("black", True), ("notebook sleeve", True), ("ThinkPad Xerox", False)],
)
def test_strict_keyword_leg_returns_exactly_the_products_holding_every_term(bench, query, found):
    want = {p.id for p in bench.products if set(analyze(query)) <= _terms(p)}
    assert bool(want) is found
    got = bench.retriever.backend.strict_lexical(query, 100, Filters())
    assert {s.id for s in got} == want
    assert [s.score for s in got] == sorted((s.score for s in got), reverse=True)
    assert all(s.score > 0 for s in got)
    cheap = bench.retriever.backend.strict_lexical(query, 100, Filters(price_max=100))
    by_id = {p.id: p for p in bench.products}
    assert {s.id for s in cheap} == {i for i in want if (by_id[i].price or 0) <= 100}


def test_strict_candidates_follow_the_first_stage_with_rank_0(bench):
    res = bench.retriever.search(SearchRequest("black", k=3), strict=50)
    first = [h for h in res.hits if h.rank >= 1]
    extra = [h for h in res.hits if h.rank == 0]
    assert [h.rank for h in first] == [1, 2, 3] and res.hits[:3] == first
    assert extra and len({h.id for h in res.hits}) == len(res.hits)
    for h in extra:
        assert h.sources["strict"].rank is not None and h.product is not None
        assert h.sources["bm25"].score is not None and h.sources["vector"].score is not None
    strict_ids = {s.id for s in bench.retriever.backend.strict_lexical("black", 50, Filters())}
    assert {h.id for h in res.hits if h.sources["strict"].rank is not None} == strict_ids
    plain = bench.retriever.search(SearchRequest("black", k=3)).hits
    assert [h.id for h in plain] == [h.id for h in first] and all("strict" not in h.sources for h in plain)
    with pytest.raises(BadInputError, match="strict candidates"):
        bench.retriever.search(SearchRequest("black", k=3), strict=-1)


def test_a_batch_with_an_id_twice_or_a_bad_id_is_refused_and_stores_nothing(fresh):
    twice = [Product("d1", "Dodo feather duster"), Product("p02", "x"), Product("d1", "Dodo again")]
    with pytest.raises(BadInputError, match=r"'d1' occurs more than once"):
        fresh.upsert(twice)
    with pytest.raises(BadInputError, match="product id 'a/b' is not allowed"):
        fresh.upsert([Product("d2", "Dodo feather duster"), Product("a/b", "Unreachable")])
    assert fresh.retriever.backend.fetch(["d1", "d2", "a/b"]) == {}
    assert fresh.retriever.backend.fetch(["p02"])["p02"].title.startswith("HP Pavilion")
    assert fresh.search("dodo duster", mode="bm25") == []


def test_a_rebuild_keeps_every_write_acknowledged_before_it(fresh):
    new = Product("n1", "Acme Zephyr notebook 13", "ultralight", "Acme", "Notebook", 499.0)
    changed = replace(next(p for p in fresh.products if p.id == "p09"), title="Logitech Quasar trackball")
    fresh.upsert([new, changed])
    assert fresh.writer.delete(["p10"]).deleted == 1
    catalog = [*fresh.products, Product("c1", "Catalog only capybara lamp")]  # knows none of the writes
    rep = build_index(catalog, fresh.store, EMBEDDER)
    assert rep.write.ok, rep.write.errors
    backend = fresh.retriever.backend
    assert fresh.search("capybara lamp", mode="bm25") == ["c1"]  # the running reader switched
    got = backend.fetch(["n1", "p09", "p10"])
    assert set(got) == {"n1", "p09"} and got["p09"].title == "Logitech Quasar trackball"
    assert fresh.search("quasar trackball", mode="bm25")[0] == "p09"
    assert fresh.search("zephyr", mode="bm25") == ["n1"]
    assert backend.count() == len(catalog)  # +1 new, -1 deleted
    assert set(_reader(fresh).fetch(["n1", "p09", "p10", "c1"])) == {"n1", "p09", "c1"}  # a restart too
    # writes after the switch land in what is served, and the next rebuild keeps them too
    fresh.upsert([Product("n2", "Wombat kettle")])
    assert fresh.search("wombat kettle", mode="bm25")[0] == "n2"
    assert _reader(fresh).fetch(["n2"]).keys() == {"n2"}
    assert build_index(catalog, fresh.store, EMBEDDER).write.ok
    assert set(backend.fetch(["n1", "n2", "p09", "p10"])) == {"n1", "n2", "p09"}
    assert set(_reader(fresh).fetch(["n1", "n2", "p09", "p10"])) == {"n1", "n2", "p09"}


def test_a_rebuild_with_another_model_reembeds_the_carried_writes(fresh):
    new = Product("n1", "Acme Zephyr notebook 13", "ultralight", "Acme", "Notebook", 499.0)
    fresh.upsert([new])
    other = HashingEmbedder(dimension=32)
    assert build_index(fresh.products, fresh.store, other).write.ok
    m = fresh.store.manifest()
    assert m is not None and m.dimension == 32
    retriever = Retriever(_reader(fresh), other)
    res = retriever.search(SearchRequest(new.embedding_text(), k=1, mode="vector"))
    assert res.hits[0].id == "n1" and res.hits[0].sources["vector"].score == pytest.approx(1.0, abs=1e-3)


def _reader(bench: Bench) -> Any:
    """A new reader of the store (a restarted service, as a model change needs)."""
    if bench.store.name == "embedded":
        from ranker.retrieval.embedded import EmbeddedBackend

        return EmbeddedBackend(bench.store)
    from ranker.retrieval.opensearch import OpenSearchBackend

    return OpenSearchBackend(bench.store.client, alias=bench.store.alias)


def _during_build(bench: Bench, monkeypatch: pytest.MonkeyPatch, action: Any) -> None:
    """Run ``action`` once while the next build runs: after its catalog is written, before the
    switch (embedded: the switch's lock; OpenSearch: the alias swap)."""
    done: list[bool] = []
    if bench.store.name == "embedded":
        import indexer.embedded.store as es

        real = es._fsync_file

        def hooked(path: Any) -> None:
            if not done:
                done.append(True)
                action()
            real(path)

        monkeypatch.setattr(es, "_fsync_file", hooked)
        return
    real_swap = bench.store._swap

    def swap(name: str) -> None:
        if not done:
            done.append(True)
            action()  # this write reaches the old index: the build must replay it after the swap
        real_swap(name)

    monkeypatch.setattr(bench.store, "_swap", swap)


def test_writes_made_while_a_rebuild_runs_are_in_the_new_version(fresh, monkeypatch):
    late = Product("late1", "Okapi rice cooker", brand="Acme")
    changed = replace(next(p for p in fresh.products if p.id == "p07"), title="Renamed while building")

    def write() -> None:
        fresh.upsert([late, changed])
        assert fresh.writer.delete(["p08"]).deleted == 1

    _during_build(fresh, monkeypatch, write)
    assert build_index(fresh.products, fresh.store, EMBEDDER).write.ok
    got = fresh.retriever.backend.fetch(["late1", "p07", "p08"])
    assert set(got) == {"late1", "p07"} and got["p07"].title == "Renamed while building"
    assert fresh.search("okapi rice cooker", mode="bm25")[0] == "late1"
    assert fresh.retriever.backend.count() == len(fresh.products)
    assert _reader(fresh).fetch(["late1", "p08"]).keys() == {"late1"}  # and so does a restart


@pytest.mark.integration
def test_the_replay_after_the_swap_never_overwrites_a_newer_write(
    fixture_products, tmp_path_factory, monkeypatch
):
    opened = _open("opensearch", fixture_products, tmp_path_factory)
    bench = next(opened)
    first = replace(next(p for p in bench.products if p.id == "p11"), title="Written before the swap")
    second = replace(first, title="Written after the swap")
    swapped: list[bool] = []
    real_swap, real_fetch = bench.store._swap, bench.store.updates.fetch

    def swap(name: str) -> None:
        bench.upsert([first])  # reaches the old index: the replay after the swap must bring it over
        real_swap(name)
        swapped.append(True)

    def fetch(ids: Any) -> Any:
        got = real_fetch(ids)
        if swapped and len(swapped) == 1:
            swapped.append(True)
            bench.upsert([second])  # a live writer, between the replay's two reads: already in the new index
        return got  # the replay now holds the older entry: it must not write it over the newer one

    monkeypatch.setattr(bench.store, "_swap", swap)
    monkeypatch.setattr(bench.store.updates, "fetch", fetch)
    try:
        assert build_index(bench.products, bench.store, EMBEDDER).write.ok
        assert len(swapped) == 2
        assert bench.retriever.backend.fetch(["p11"])["p11"].title == "Written after the swap"
    finally:
        opened.close()  # drops the test's indices


# -- query understanding: typos and prefixes, the same on every backend -------------------------
def _understanding(bench: Bench):
    from ranker.query.lexicon import lexicon_of
    from ranker.query.rewrite import QueryRewriter
    from ranker.query.searcher import UnderstandingSearcher
    from ranker.ranking.pipelines import ModeSearcher

    lexicon = lexicon_of(bench.retriever.backend)
    assert lexicon is not None, "every backend lists its vocabulary for query understanding"
    rewriter = QueryRewriter(lexicon)
    return lexicon, lambda mode: UnderstandingSearcher(ModeSearcher(bench.retriever, Mode(mode)), rewriter)


def test_every_backend_lists_the_same_vocabulary(bench, fixture_products):
    from ranker.query.lexicon import Lexicon

    lexicon, _ = _understanding(bench)
    naming = ("title", "name", "brand", "category")
    expected = Lexicon.from_documents(
        (
            [raw_tokens(text_fields(p)[f]) for f in naming],
            [t for f, v in text_fields(p).items() if f not in naming for t in analyze(v)],
        )
        for p in fixture_products
    )
    assert lexicon.terms == expected.terms
    assert lexicon.df.tolist() == expected.df.tolist()
    assert lexicon.other == expected.other


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
@pytest.mark.parametrize(
    ("typed", "clean"),
    [
        ("thinkpda", "thinkpad"),  # transposition
        ("espreso machine", "espresso machine"),  # deletion
        ("logitech keybaord", "logitech keyboard"),  # transposition in the second word
        ("samsumg phone", "samsung phone"),  # substitution
    ],
)
def test_a_typo_finds_what_the_clean_query_finds(bench, mode, typed, clean):
    _, searcher = _understanding(bench)
    res = searcher(mode).search(SearchRequest(typed, k=3))
    assert res.interpretation.query == clean
    assert res.interpretation.corrections
    assert [h.id for h in res.hits][:1] == bench.search(clean, k=3, mode=mode)[:1]


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
@pytest.mark.parametrize(
    ("typed", "top"), [("thinkp", "p01"), ("toner cartr", "p15"), ("espresso mach", "p27")]
)
def test_the_word_being_typed_is_completed(bench, mode, typed, top):
    _, searcher = _understanding(bench)
    res = searcher(mode).search(SearchRequest(typed, k=3))
    assert res.interpretation.completion is not None
    assert res.hits[0].id == top
    # exact=true searches the text as typed
    exact = searcher(mode).search(SearchRequest(typed, k=3, exact=True))
    assert exact.interpretation.exact and exact.interpretation.query == typed
    assert exact.interpretation.completion is None
    if mode == "bm25" and " " not in typed:
        assert exact.hits == []  # the prefix alone is no word of the catalog


def test_real_words_and_model_numbers_are_never_corrected(bench):
    _, searcher = _understanding(bench)
    for q in ("laptop sleeve ", "u2723qe ", "hl-l2350dw ", "pro ", "ink "):
        res = searcher("bm25").search(SearchRequest(q, k=3))
        assert res.interpretation.query == q, q
        assert not res.interpretation.corrections


def test_expansions_add_their_weighted_bm25_on_every_backend(bench):
    from indexer.schema import DEFAULT_SYNONYM_WEIGHT

    backend = bench.retriever.backend
    # "thinkpad" has no synonyms: its score is BM25 × (1 + synonym weight), the clause counted twice
    plain = {s.id: s.score for s in backend.lexical("thinkpad", 50, Filters())}
    extra = {s.id: s.score for s in backend.lexical("zzzq", 50, Filters(), (("thinkpad", 0.5),))}
    assert plain and set(extra) == set(plain)
    for pid, score in extra.items():
        assert score == pytest.approx(0.5 * plain[pid] / (1 + DEFAULT_SYNONYM_WEIGHT), rel=1e-3)
    assert backend.lexical_scores("zzzq", list(plain), (("thinkpad", 0.5),)) == pytest.approx(extra, rel=1e-4)
    # an expansion adds to the query's own score and brings products only it matches
    both = {s.id: s.score for s in backend.lexical("notebook", 50, Filters(), (("thinkpad", 0.5),))}
    alone = {s.id: s.score for s in backend.lexical("notebook", 50, Filters())}
    assert set(both) == set(alone) | set(extra)
    for pid in extra:
        assert both[pid] == pytest.approx(alone.get(pid, 0.0) + extra[pid], rel=1e-3)


def test_every_backend_gives_the_same_product_types(bench, fixture_products):
    """The type model is learned from the titles and categories the backend lists, as written."""
    from ranker.query.types import TypeModel

    listed = sorted(d[2] for d in bench.retriever.backend.naming_documents())
    assert listed == sorted((p.title, p.category) for p in fixture_products)
    ours = TypeModel.fit(listed)
    assert ours.counts == TypeModel.fit((p.title, p.category) for p in fixture_products).counts
