"""Lexical coverage features and the ListNet fusion objective."""

import numpy as np
import pytest

from indexer.errors import BadInputError
from indexer.product import Product
from ranker.base import Hit, SourceScore
from ranker.ranking.features import FEATURES, feature_matrix
from ranker.ranking.lexical import LEXICAL_FEATURES, lexical_features
from ranker.ranking.linear_fusion import OBJECTIVES, fit_fusion, fit_listnet

LAPTOP = Product("1", "HP EliteBook 840 Laptops", brand="HP", attributes={"type": "Notebook"})
SLEEVE = Product("2", "Kensington laptop sleeve 15.6 inch", brand="Kensington")
MOUSE = Product("3", "Wireless mouse", brand="Logitech", attributes={"compatibility": "HP laptops"})
DOCK = Product("4", "USB-C dock", brand="Targus", name="HP dock", description="for any laptop")


def test_coverage_counts_analyzed_query_terms_per_field():
    x = lexical_features("HP laptop", [LAPTOP, SLEEVE, MOUSE, None, DOCK])
    title, fields, brand, all_terms = (LEXICAL_FEATURES.index(f) for f in LEXICAL_FEATURES)
    # "Laptops" in the title covers "laptop" (same stemming as the index); "hp" is the brand.
    assert x[0].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert x[1, title] == 0.5 and x[1, fields] == 0.5 and x[1, brand] == 0.0 and x[1, all_terms] == 0.0
    # The mouse names both terms only in an attribute, so only field coverage sees them.
    assert x[2, title] == 0.0 and x[2, fields] == 1.0 and x[2, brand] == 0.0 and x[2, all_terms] == 1.0
    assert x[3].tolist() == [0.0, 0.0, 0.0, 0.0]  # a hit without its product stays neutral
    # Name and description count for "every term in some field" (the strict leg's fields), not
    # for field coverage.
    assert x[4, fields] == 0.0 and x[4, all_terms] == 1.0
    assert not lexical_features("", [LAPTOP]).any() and not lexical_features(None, [LAPTOP]).any()


def test_feature_matrix_fills_lexical_columns_only_with_a_query():
    hits = [Hit("1", 1.0, 1, {"bm25": SourceScore(3.0, 1)}, LAPTOP), Hit("2", 0.5, 2, {}, SLEEVE)]
    cols = [FEATURES.index(f) for f in LEXICAL_FEATURES]
    assert not feature_matrix(hits)[:, cols].any()
    x = feature_matrix(hits, query="hp laptops")
    assert x[:, cols].tolist() == [[1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.0, 0.0]]


def _groups(seed, informative="title_coverage", n=40):
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n):
        x = rng.uniform(0, 1, (15, len(FEATURES)))
        grades = np.clip(np.round(3 * x[:, FEATURES.index(informative)] + 0.3 * rng.normal(size=15)), 0, 3)
        groups.append((x, grades))
    return groups


def test_listnet_learns_the_informative_feature_and_is_deterministic():
    groups = _groups(0)
    model = fit_listnet(groups)
    w = model.weights
    assert max(w, key=lambda f: w[f]) == "title_coverage"
    assert w["title_coverage"] > 5 * max(abs(w[f]) for f in FEATURES if f != "title_coverage")
    assert fit_listnet(groups).weights == w and model.meta["objective"] == "listnet"
    # The learned order ranks each query's top-graded product above its ungraded ones.
    x, g = groups[0]
    s = model.score(x)
    assert s[np.argmax(g)] > np.median(s[g == 0])


def test_listnet_restricted_features_and_bad_input():
    model = fit_listnet(_groups(1), features=["bm25", "vector"])
    assert all(model.weights[f] == 0.0 for f in FEATURES if f not in ("bm25", "vector"))
    with pytest.raises(BadInputError, match="different grades"):
        fit_listnet([(np.zeros((3, len(FEATURES))), [2, 2, 2])])
    with pytest.raises(BadInputError, match="choose from"):
        fit_listnet(_groups(1), features=["clicks"])


def test_objective_registry_names_its_choices():
    assert set(OBJECTIVES) == {"pairwise", "listnet"}
    assert fit_fusion("pairwise", _groups(2)).meta["objective"] == "pairwise"
    with pytest.raises(BadInputError, match="choose from pairwise, listnet"):
        fit_fusion("lambdamart", _groups(2))


def test_strict_match_is_whether_the_strict_keyword_leg_ranked_the_hit():
    hits = [
        Hit("1", 1.0, 1, {"strict": SourceScore(4.0, 2)}, LAPTOP),
        Hit("2", 0.5, 2, {"strict": SourceScore(None, None)}, SLEEVE),
        Hit("3", 0.2, 0, {}, MOUSE),
    ]
    x = feature_matrix(hits, query="hp laptop")
    assert x[:, FEATURES.index("strict_match")].tolist() == [1.0, 0.0, 0.0]
    assert x[:, FEATURES.index("retrieval")].tolist()[2] == 0.0  # rank 0: not ranked by the first stage


def test_cached_field_terms_give_the_same_features_and_follow_an_upsert():
    from dataclasses import replace

    from ranker.ranking.lexical import FieldTerms

    products = [
        Product("1", "Acme Laptop Sleeve", brand="Acme", category="Bags"),
        Product("2", "Zenbook 14 laptop", brand="Asus", description="a light notebook"),
        None,
    ]
    cache = FieldTerms(size=2)
    for q in ("acme laptop", "notebook", "laptops sleeve"):
        assert np.array_equal(lexical_features(q, products, cache), lexical_features(q, products))
    assert len(cache) == 2
    renamed = replace(products[0], title="Acme Tablet Sleeve")  # upserted: its text changed
    assert lexical_features("laptop", [renamed], cache)[0, 0] == 0.0
    assert lexical_features("laptop", [products[0]], cache)[0, 0] == 1.0
    assert len(cache) == 2  # bounded: the oldest entry went
    with pytest.raises(ValueError):
        FieldTerms(size=0)


def test_the_lru_keeps_the_values_used_last_and_counts_hits():
    from ranker.lazy import LRU

    lru: LRU[str, int] = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # "a" is now the most recent
    lru.put("c", 3)  # so "b" goes
    assert lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3 and len(lru) == 2
    assert (lru.hits, lru.misses) == (3, 1)
    off: LRU[str, int] = LRU(0)
    off.put("a", 1)
    assert off.get("a") is None and len(off) == 0
    with pytest.raises(ValueError):
        LRU(-1)
