"""Offline recommendation evaluation: the time-ordered split, the baselines and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from indexer.events import Event
from ranker.evaluation.recommendations import ItemKNN, Popularity, Scores, evaluate, leave_last_out


def ev(action: str, client: str, pid: str, t: float) -> Event:
    return Event(action, client, t, object_id=pid, product_id=pid)


LOG = [
    ev("click", "a", "p1", 1),
    ev("purchase", "a", "p2", 2),
    ev("click", "a", "p3", 3),
    ev("purchase", "a", "p4", 4),  # a's last conversion: the target
    ev("click", "a", "p5", 5),  # after the target: dropped from training
    ev("click", "b", "p1", 1),
    ev("add_to_cart", "b", "p4", 2),
    ev("purchase", "c", "p9", 1),  # a conversion with no history before it: not a case
    ev("click", "d", "p1", 1),  # no conversion: all training
]


def test_leave_last_out_holds_out_the_last_conversion_and_what_follows():
    split = leave_last_out(LOG)
    cases = {c.client_id: c for c in split.cases}
    assert set(cases) == {"a", "b"}
    assert (
        cases["a"].target == "p4" and cases["a"].history == ("p1", "p2", "p3") and cases["a"].anchor == "p3"
    )
    assert cases["b"].target == "p4" and cases["b"].history == ("p1",)
    train = {(e.client_id, e.product_id) for e in split.train}
    assert ("a", "p4") not in train and ("a", "p5") not in train and ("b", "p4") not in train
    assert {("c", "p9"), ("d", "p1"), ("a", "p3")} <= train


def test_item_knn_matches_a_dense_cosine_reference():
    train = [
        ev("click", c, p, 1)
        for c, p in [("x", "p1"), ("x", "p2"), ("y", "p1"), ("y", "p2"), ("y", "p3"), ("z", "p3")]
    ]
    knn = ItemKNN(train)
    m = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=float)  # clients x items (p1, p2, p3)
    ref = (m.T @ m) / np.outer(np.linalg.norm(m, axis=0), np.linalg.norm(m, axis=0))
    np.fill_diagonal(ref, 0)
    assert knn.scores(["p1"]) == pytest.approx(ref[0])
    assert knn.recommend(["p1"], 2, {"p1"}) == ["p2", "p3"]
    assert knn.recommend(["unknown"], 2, set()) == []


def test_popularity_weights_actions_and_excludes():
    pop = Popularity(
        [
            ev("purchase", "a", "p1", 1),
            ev("click", "b", "p2", 1),
            ev("click", "c", "p2", 1),
            ev("impression", "d", "p3", 1),
        ]
    )
    assert pop.recommend(3, set()) == ["p1", "p2"]  # 5 > 1 + 1; impressions weigh nothing
    assert pop.recommend(3, {"p1"}) == ["p2"]


def test_hit_rate_and_ndcg_of_one_target():
    s = Scores()
    s.add(["x", "t", "y"], "t", 10)
    s.add(["x", "y"], "t", 10)
    s.add(["t"] + ["z"] * 20, "t", 10)
    out = s.summary(catalog_size=4)
    assert out["hit_rate"] == pytest.approx(2 / 3)
    assert out["ndcg"] == pytest.approx((1 / math.log2(3) + 1.0) / 3)
    assert out["coverage"] == pytest.approx(4 / 4)


def test_evaluate_runs_every_method_on_both_tasks():
    split = leave_last_out(LOG)
    oracle = {"a": "p4", "b": "p4"}
    methods = {
        "oracle": (lambda c, k: [oracle[c.client_id]], lambda c, k: [c.target]),
        "never": (lambda c, k: [], lambda c, k: []),
    }
    out = evaluate(split, methods, k=10, catalog_size=9)
    assert out["user"]["oracle"]["hit_rate"] == 1.0 and out["similar"]["oracle"]["ndcg"] == 1.0
    assert out["user"]["never"]["hit_rate"] == 0.0 and out["user"]["never"]["cases"] == 2.0
