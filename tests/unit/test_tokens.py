"""The compact analyzed text of a segment (issue 15, 1M products in ≤ 6 GB): a TokenTable holds
exactly the terms analyze_product gives, BM25 built from it scores as BM25 built from the terms,
and what a merge does to it (take rows, append rows, cut the vocabulary) equals a table built
fresh from the same rows."""

from __future__ import annotations

import numpy as np

from indexer.product import Product
from indexer.schema import COMBINED_FIELD, STRICT_FIELDS
from ranker.retrieval.bm25 import BestFieldBM25, BM25Index
from ranker.retrieval.segments import analyze_product
from ranker.retrieval.tokens import TokenTable

WORDS = ["red", "camera", "bags", "usb-c", "cable", "lens", "tripod", "mouse", "4k", "screen"]


def _product(i: int) -> Product:
    title = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7))
    return Product(
        f"p{i}",
        f"{title} model {i}",
        description="" if i % 3 else f"a {WORDS[i % len(WORDS)]} for travel",
        brand="" if i % 5 == 0 else f"Brand{i % 4}",
        category="Cameras" if i % 2 else "",
        attributes={"colour": WORDS[i % 4]} if i % 4 else {},
    )


DOCS = [analyze_product(_product(i)) for i in range(40)]


def test_rows_read_back_as_analyzed():
    table = TokenTable.of(iter(DOCS))  # a generator: read once
    assert len(table) == len(DOCS)
    for i, d in enumerate(DOCS):
        assert table.terms(i) == {f: ts for f, ts in d.items() if ts or f == COMBINED_FIELD}
        assert table.same(i, d)
    assert not table.same(0, DOCS[1])
    assert not table.same(0, {**DOCS[0], "title": [*DOCS[0]["title"], "extra"]})


def test_bm25_from_the_table_scores_as_from_the_terms():
    table = TokenTable.of(DOCS)
    boosts = {"title": 2.0, "brand": 1.0, COMBINED_FIELD: 1.0, "attributes_text": 0.5}
    want, got = BM25Index(DOCS, boosts), BM25Index.of_tokens(table, boosts)
    strict_want, strict_got = (
        BestFieldBM25(DOCS, STRICT_FIELDS),
        BestFieldBM25.of_tokens(table, STRICT_FIELDS),
    )
    for q in (["camera"], ["red", "bag", "red"], ["travel", "lens"], ["nothing"], ["brand1", "cabl"]):
        np.testing.assert_allclose(got.scores(q), want.scores(q), rtol=1e-6)
        for a, b in zip(strict_got.scores(q), strict_want.scores(q), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    one_more = analyze_product(_product(77))
    assert got.document_scores(one_more) == want.document_scores(one_more)


def test_merge_operations_equal_a_fresh_table():
    table = TokenTable.of(DOCS[:30])
    keep = np.asarray([29, 3, 4, 17, 0])
    added = [analyze_product(Product("n1", "zorblax camera")), DOCS[35]]
    merged = table.take(keep).extended(added).compacted()
    fresh = [DOCS[i] for i in keep.tolist()] + added
    assert len(merged) == len(fresh)
    assert [merged.terms(i) for i in range(len(fresh))] == [
        TokenTable.of(fresh).terms(i) for i in range(len(fresh))
    ]
    used = {t for d in fresh for f, ts in d.items() if f != COMBINED_FIELD for t in ts}
    assert set(merged.words) == used  # no term of a dropped row left in the vocabulary
    assert "zorblax" in merged.vocab and table.vocab.get("zorblax") is None  # the old table unchanged
    boosts = {COMBINED_FIELD: 1.0}
    for q in (["camera"], ["zorblax"], ["tripod", "red"]):
        np.testing.assert_allclose(
            BM25Index.of_tokens(merged, boosts).scores(q), BM25Index(fresh, boosts).scores(q), rtol=1e-6
        )


def test_empty_table():
    table = TokenTable.of([])
    assert len(table) == 0 and table.words == []
    assert BM25Index.of_tokens(table, {COMBINED_FIELD: 1.0}).scores(["x"]).shape == (0,)
    assert len(table.take(np.zeros(0, dtype=np.int64)).extended([DOCS[0]])) == 1
