"""Evaluation metrics on a tiny case computed by hand."""

import math

import pytest

from indexer.errors import BadInputError
from ranker.evaluation.relevance import compute_metrics, judged_at, load_judgments

QRELS = {
    "q1": {"a": 3, "b": 0, "c": 1, "x": 2},  # x is never retrieved
    "q2": {"d": 2, "e": 0},
    "q3": {"f": 0},  # no relevant product: not evaluated
}
RUN = {
    "q1": {"u": 5.0, "a": 4.0, "b": 3.0, "c": 2.0},  # u is unjudged
    "q2": {"e": 2.0, "d": 1.0},
    "q3": {"f": 1.0},
}


def dcg(rels):
    return sum(r / math.log2(i + 2) for i, r in enumerate(rels))


def test_metrics_by_hand():
    m = compute_metrics(RUN, QRELS)
    q1 = dcg([0, 3, 0, 1]) / dcg([3, 2, 1])
    q2 = dcg([0, 2]) / dcg([2])
    assert m["ndcg@10"] == pytest.approx((q1 + q2) / 2)
    q1c = dcg([3, 0, 1]) / dcg([3, 2, 1])  # the unjudged "u" removed
    assert m["ndcg_condensed@10"] == pytest.approx((q1c + q2) / 2)
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert m["recall@100"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["judged@10"] == pytest.approx((3 / 10 + 2 / 10) / 2)


def test_missing_query_counts_as_zero():
    m = compute_metrics({"q1": RUN["q1"]}, QRELS)
    q1 = dcg([0, 3, 0, 1]) / dcg([3, 2, 1])
    assert m["ndcg@10"] == pytest.approx(q1 / 2)


def test_judged_at():
    assert judged_at({"q": {"a": 2.0, "z": 1.0}}, {"q": {"a": 1}}, k=10) == {"q": 0.1}


def test_load_judgments_errors(tmp_path):
    f = tmp_path / "j.csv"
    f.write_text("query,doc,rating\nx,1,1\n")
    with pytest.raises(BadInputError, match="query,docid,rating"):
        load_judgments(f)
    f.write_text("query,docid,rating\nx,1,high\n")
    with pytest.raises(BadInputError, match="rating must be an integer"):
        load_judgments(f)
    with pytest.raises(BadInputError, match="not found"):
        load_judgments(tmp_path / "none.csv")
    f.write_text("query,docid,rating\nlaptop,1,3\nlaptop,2,0\ntv,3,1\n")
    assert load_judgments(f) == {"laptop": {"1": 3, "2": 0}, "tv": {"3": 1}}


def test_diversity_at_top_k():
    import numpy as np

    from ranker.evaluation.relevance import diversity_at

    vec = {"a": [1.0, 0.0], "b": [1.0, 0.0], "c": [0.0, 1.0]}
    brand = {"a": "HP", "b": "hp", "c": "Dell"}

    def lookup(ids):
        return np.asarray([vec[i] for i in ids]), [brand[i] for i in ids]

    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"a": 2.0, "b": 1.0}}
    got = diversity_at(run, lookup, k=10)
    # q1: pairs (a,b)=0, (a,c)=1, (b,c)=1 -> 2/3, brands {hp, dell} = 2; q2: 0 and 1.
    assert got["ild@10"] == pytest.approx((2 / 3 + 0) / 2)
    assert got["distinct_brands@10"] == pytest.approx(1.5)
    assert diversity_at(run, lookup, k=1)["ild@1"] == 0.0
