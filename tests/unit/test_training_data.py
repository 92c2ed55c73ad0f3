"""Training-set construction: query groups, leak-free folds, pseudo-queries, hard negatives."""

from __future__ import annotations

import random
import re

import pytest

from indexer.product import Product
from ranker.rerank.cross_encoder import passage
from tests.conftest import ICECAT
from training.data import (
    Example,
    TrainingSet,
    build_training_set,
    mine_hard_negatives,
    product_type,
    pseudo_queries,
)
from training.folds import filter_leaking, group_queries, kfold_queries, leaks, query_group_key

P = [
    Product(
        id="t1",
        title="Lexmark 08A0476 toner cartridge Original Black 1 pc(s)",
        brand="Lexmark",
        name="08A0476",
        attributes={"type": "Original", "product_colour": "Black"},
    ),
    Product(
        id="t2",
        title="Lexmark 15G041M toner cartridge Original Magenta 1 pc(s)",
        brand="Lexmark",
        name="15G041M",
        attributes={"product_colour": "Magenta"},
    ),
    Product(  # a duplicate listing of t1 (same title, another id)
        id="t1dup",
        title="Lexmark 08A0476 toner cartridge Original Black 1 pc(s)",
        brand="Lexmark",
        name="08A0476",
    ),
    Product(
        id="x1",
        title="Xerox 006R90321 toner cartridge Original Black",
        brand="Xerox",
        name="006R90321",
        attributes={"product_colour": "Black"},
    ),
    Product(
        id="n1",
        title='HP ProBook 450 G7 Notebook 43.9 cm (17.3") 1920 x 1080 pixels Intel Core i5 8 GB',
        brand="HP",
        name="ProBook 450 G7",
        category="Notebook",
        attributes={"product_type": "Notebook", "display_diagonal": 17.3, "product_colour": "Silver"},
    ),
    Product(
        id="m1",
        title="Logitech M185 mouse RF Wireless Optical 1000 DPI Ambidextrous",
        brand="Logitech",
        name="M185",
        attributes={"connectivity_technology": "Wireless", "product_colour": "Grey"},
    ),
    Product(
        id="c1",
        title="Tripp Lite Duplex Multimode 62.5/125 Fiber Patch Cable (LC/SC), 6M",
        brand="Tripp Lite",
        name="N318-06M",
    ),
    Product(
        id="b1",
        title="Canon Battery Grip BG-E7",
        brand="Canon",
        name="BG-E7",
    ),
]
CATALOG = {p.id: p for p in P}
SKU = re.compile(r"\d")


def fake_retriever(ranking):
    """A retriever callable that returns a fixed ranking whatever the query."""

    def retrieve(query: str, n: int) -> list[str]:
        return list(ranking)[:n]

    return retrieve


def all_ids(query: str, n: int) -> list[str]:
    return [p.id for p in P][:n]


# -- folds ----------------------------------------------------------------------------------------
def test_group_key_merges_variants():
    assert query_group_key("laptop") == query_group_key("Laptops") == query_group_key("laptops!")
    assert query_group_key("Café Pods") == query_group_key("cafe pod")
    assert query_group_key("hp toner") == query_group_key("Toner, HP")
    assert query_group_key("boxes") == query_group_key("box")
    assert query_group_key("batteries") == query_group_key("Battery")
    assert query_group_key("case for iphone") == query_group_key("iphone case")


def test_group_key_keeps_different_queries_apart():
    keys = {query_group_key(q) for q in ["laptop", "laptop case", "notebook", "tv", "toner", "aa", "aaa"]}
    assert len(keys) == 7


def test_compound_variants_share_a_group():
    groups = group_queries(["smart watch", "smartwatch", "head set", "headset", "headphones"])
    assert sorted(map(sorted, groups.values())) == [
        ["head set", "headset"],
        ["headphones"],
        ["smart watch", "smartwatch"],
    ]


QUERIES = [
    "laptop", "laptops", "Laptop", "notebook", "tv", "flat screen tv", "smart watch", "smartwatch",
    "aa battery", "aa batteries", "printer", "laser printer", "mouse", "gaming mouse", "ssd", "sd card",
    "micro sd card", "headset", "head set", "camera",
]  # fmt: skip


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_no_leaks_and_full_cover(k):
    folds = kfold_queries(QUERIES, k=k, seed=13)
    assert len(folds) == k
    tested = [q for _, test in folds for q in test]
    assert sorted(tested) == sorted(set(QUERIES))  # every query in exactly one test fold
    for train, test in folds:
        assert not leaks(train, test)
        assert set(train) | set(test) == set(QUERIES) and not set(train) & set(test)
    sizes = [len(test) for _, test in folds]
    assert max(sizes) - min(sizes) <= 3  # groups have at most 3 members


def test_kfold_is_deterministic_and_seeded():
    assert kfold_queries(QUERIES, 5, 13) == kfold_queries(list(QUERIES), 5, 13)
    assert kfold_queries(QUERIES, 5, 13) != kfold_queries(QUERIES, 5, 14)
    with pytest.raises(ValueError):
        kfold_queries(["a", "b"], k=3)


def test_leaks_and_filter_leaking():
    assert leaks(["Laptops", "tv"], ["laptop"]) == {"laptop"}
    assert not leaks(["laptop case"], ["laptop"])
    ex = [Example(q, "t1", "text", 1.0, "pseudo_pos") for q in ["notebooks", "notebook case", "Notebook!"]]
    assert [e.query for e in filter_leaking(ex, ["notebook"])] == ["notebook case"]
    assert filter_leaking(ex, []) == ex


# -- pseudo-queries -------------------------------------------------------------------------------
def test_pseudo_queries_shape():
    for p in P:
        qs = pseudo_queries(p, random.Random(1))
        assert len({q for q, _ in qs}) == len(qs)
        for q, kind in qs:
            assert q == q.lower() and q == " ".join(q.split())
            assert 1 <= len(q.split()) <= 5
            assert not re.search(r"[(),!?\"]", q)
            if kind in ("type", "brand_type", "attr_type", "title_span"):
                assert not any(SKU.search(w) and re.search("[a-z]", w) for w in q.split()), (q, kind)
        assert pseudo_queries(p, random.Random(1)) == qs  # deterministic given the rng


def test_pseudo_queries_kinds():
    qs = dict((k, q) for q, k in pseudo_queries(CATALOG["t1"], random.Random(0)))
    assert qs["type"] == "toner cartridge"
    assert qs["brand_type"] == "lexmark toner cartridge"
    assert qs["attr_type"] == "black toner cartridge"
    assert qs["model"] == "lexmark 08a0476"
    qs = dict((k, q) for q, k in pseudo_queries(CATALOG["x1"], random.Random(0)))
    assert qs["model"] == "xerox 006r90321"
    qs = dict((k, q) for q, k in pseudo_queries(CATALOG["n1"], random.Random(0)))
    assert qs["type"] == "notebook" and qs["brand_type"] == "hp notebook"
    assert product_type(CATALOG["c1"]) == "patch cable"
    assert product_type(CATALOG["m1"]) == "mouse"
    assert product_type(CATALOG["b1"]) == ""  # a battery grip is not a battery
    attr = {
        q for s in range(20) for q, k in pseudo_queries(CATALOG["n1"], random.Random(s)) if k == "attr_type"
    }
    assert attr == {"17.3 inch notebook", "silver notebook"}
    assert "wireless mouse" in {
        q for s in range(20) for q, _ in pseudo_queries(CATALOG["m1"], random.Random(s))
    }
    spans = [q for q, k in pseudo_queries(CATALOG["c1"], random.Random(0)) if k == "title_span"]
    assert spans and 2 <= len(spans[0].split()) <= 4 and "tripp" not in spans[0]


# -- hard negatives -------------------------------------------------------------------------------
def test_hard_negatives_skip_positives_and_near_duplicates():
    negs = mine_hard_negatives(
        "lexmark 08a0476", {"t1"}, all_ids, fake_retriever(["t1dup", "x1", "m1"]), n=10, k=10, catalog=CATALOG
    )
    ids = [i for i, _ in negs]
    assert "t1" not in ids and "t1dup" not in ids  # the positive and its duplicate listing
    assert "t2" in ids  # same brand and type, but the query names a model code
    assert len(ids) == len(set(ids))
    assert {s for _, s in negs} <= {"bm25_neg", "vector_neg"}
    assert negs[0][1] == "bm25_neg" and negs[1][1] == "vector_neg"  # sources alternate


def test_hard_negatives_skip_candidates_matching_the_query():
    negs = mine_hard_negatives("toner cartridge", {"t1"}, all_ids, None, n=10, k=10, catalog=CATALOG)
    ids = {i for i, _ in negs}
    assert not ids & {"t1", "t1dup", "t2", "x1"}  # every toner cartridge could be what the shopper wants
    assert ids == {"n1", "m1", "c1", "b1"}
    negs = mine_hard_negatives("lexmark cartridge black", {"t1"}, all_ids, None, k=10, catalog=CATALOG)
    assert "t2" not in {i for i, _ in negs}  # same brand and type as the positive
    assert len(mine_hard_negatives("mouse", {"m1"}, all_ids, all_ids, k=2, catalog=CATALOG)) == 2


# -- the training set -----------------------------------------------------------------------------
QRELS = {"Toner Cartridges": {"t1": 3, "t2": 2, "m1": 0}, "wireless mouse": {"m1": 3, "n1": 1, "zz": 2}}


def build(**kw):
    args = dict(lexical=all_ids, vector=fake_retriever(["x1", "c1", "b1"]), per_product=3, seed=1)
    args.update(kw)
    return build_training_set(P, QRELS, **args)


def test_judged_labels_are_rating_over_three():
    ts = build(sources=("judgments",))
    labels = {(e.query, e.product_id): e.label for e in ts.examples}
    assert labels == {
        ("Toner Cartridges", "t1"): 1.0,
        ("Toner Cartridges", "t2"): pytest.approx(2 / 3),
        ("Toner Cartridges", "m1"): 0.0,
        ("wireless mouse", "m1"): 1.0,
        ("wireless mouse", "n1"): pytest.approx(1 / 3),
    }  # "zz" is not in the catalog
    assert ts.counts_by_source() == {"judged": 5}
    assert all(e.text == passage(CATALOG[e.product_id]) for e in ts.examples)


def test_build_sources_and_labels():
    ts = build()
    counts = ts.counts_by_source()
    assert counts["judged"] == 5 and counts["pseudo_pos"] > 0 and counts["bm25_neg"] > 0
    assert counts.get("vector_neg", 0) > 0
    for e in ts.examples:
        assert e.text == passage(CATALOG[e.product_id])
        if e.source == "pseudo_pos":
            assert e.label == 1.0 and e.kind
        elif e.source.endswith("_neg"):
            assert e.label == 0.0
    positives = {(query_group_key(e.query), e.product_id) for e in ts.examples if e.label > 0}
    assert not any((query_group_key(e.query), e.product_id) in positives for e in ts.examples if e.label == 0)
    without = build(sources=("pseudo", "judgments"))
    assert set(without.counts_by_source()) == {"judged", "pseudo_pos"}
    only_pseudo = build(sources=("pseudo",))
    assert set(only_pseudo.counts_by_source()) == {"pseudo_pos"}
    with pytest.raises(ValueError):
        build(sources=("bogus",))


def test_excluded_queries_and_variants_never_appear():
    ts = build()
    assert any(query_group_key(e.query) == query_group_key("toner cartridge") for e in ts.examples)
    excluded = build(exclude_queries=["toner cartridge", "Wireless Mouse"])
    for e in excluded.examples:
        assert query_group_key(e.query) not in {query_group_key("toner cartridges"), "mouse wireless"}
    assert "judged" not in excluded.counts_by_source()  # both judged queries are variants of excluded ones


def test_determinism_and_data_hash():
    a, b = build(), build()
    assert a.examples == b.examples and a.data_hash() == b.data_hash()
    shuffled = TrainingSet(list(reversed(a.examples)))
    assert shuffled.data_hash() == a.data_hash()  # order-independent
    changed = TrainingSet(a.examples[:-1] + [Example(**{**a.examples[-1].__dict__, "label": 0.5})])
    assert changed.data_hash() != a.data_hash()
    assert build(max_products=4, seed=2).data_hash() != build(max_products=4, seed=3).data_hash()


def test_jsonl_round_trip(tmp_path):
    ts = build()
    path = tmp_path / "train.jsonl"
    ts.to_jsonl(path)
    back = TrainingSet.from_jsonl(path)
    assert back.examples == ts.examples and back.data_hash() == ts.data_hash()
    path.write_text('{"query": "x"}\n')
    with pytest.raises(ValueError, match="train.jsonl:1"):
        TrainingSet.from_jsonl(path)


def test_example_validates_label():
    with pytest.raises(ValueError):
        Example("q", "p", "text", 1.5, "judged")


@pytest.mark.skipif(not (ICECAT / "products_1.json.zip").exists(), reason="Icecat catalog absent")
def test_real_catalog_sample_has_every_source():
    from indexer.analysis import analyze
    from indexer.catalog import read_catalog
    from ranker.evaluation.relevance import load_judgments

    products = read_catalog(ICECAT).products
    qrels = load_judgments(ICECAT / "judgments_dev.csv")
    by_id = {p.id: p for p in products}
    terms = {p.id: set(analyze(p.title)) for p in products}

    def lexical(query: str, n: int) -> list[str]:  # term overlap, ties by id
        q = set(analyze(query))
        scored = sorted(((len(q & t), i) for i, t in terms.items() if q & t), key=lambda x: (-x[0], x[1]))
        return [i for _, i in scored[:n]]

    def vector(query: str, n: int) -> list[str]:  # "nearest": same brand token first
        return sorted(by_id, key=lambda i: (by_id[i].brand.lower() not in query, i))[:n]

    ts = build_training_set(
        products, qrels, lexical=lexical, vector=vector, max_products=50, seed=13, per_product=2
    )
    counts = ts.counts_by_source()
    assert set(counts) == {"judged", "pseudo_pos", "bm25_neg", "vector_neg"}
    assert all(v > 0 for v in counts.values())
    assert counts["pseudo_pos"] >= 50
