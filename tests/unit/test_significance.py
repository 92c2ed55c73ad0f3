"""Per-query nDCG (checked against ranx), paired bootstrap intervals and the reranking ceiling."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from indexer.errors import BadInputError
from ranker.evaluation.relevance import PipelineResult, compute_metrics, write_outputs
from ranker.evaluation.significance import oracle_run, paired_bootstrap, per_query_ndcg


def _random_case(seed: int = 3):
    rng = random.Random(seed)
    qrels, run = {}, {}
    for qi in range(25):
        q = f"q{qi}"
        docs = [f"d{j}" for j in range(30)]
        qrels[q] = {d: rng.choice([0, 0, 1, 2, 3]) for d in rng.sample(docs, 12)}
        ranked = rng.sample(docs, 20)
        run[q] = {d: float(20 - i) for i, d in enumerate(ranked)}
    qrels["all-zero"] = {"d1": 0, "d2": 0}  # no relevant product: left out, as compute_metrics does
    run["all-zero"] = {"d1": 2.0, "d2": 1.0}
    return qrels, run


def test_per_query_ndcg_matches_ranx():
    pytest.importorskip("ranx")
    qrels, run = _random_case()
    per_q = per_query_ndcg(run, qrels)
    assert "all-zero" not in per_q and len(per_q) == 25
    assert np.mean(list(per_q.values())) == pytest.approx(compute_metrics(run, qrels)["ndcg@10"], abs=1e-9)


def test_per_query_ndcg_by_hand():
    qrels = {"q": {"a": 3, "b": 1, "c": 0}}
    run = {"q": {"x": 3.0, "b": 2.0, "a": 1.0}}  # unjudged x first, then b (1), then a (3)
    dcg = 0 / math.log2(2) + 1 / math.log2(3) + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert per_query_ndcg(run, qrels)["q"] == pytest.approx(dcg / idcg)
    assert per_query_ndcg({}, qrels)["q"] == 0.0  # a query the run lacks scores 0


def test_paired_bootstrap():
    a = {f"q{i}": 0.5 for i in range(40)}
    same = paired_bootstrap(a, dict(a))
    assert (same.delta, same.low, same.high, same.ties, same.wins) == (0.0, 0.0, 0.0, 40, 0)
    better = {q: v + (0.1 if i % 2 else 0.0) for i, (q, v) in enumerate(sorted(a.items()))}
    c = paired_bootstrap(a, better)
    assert c.delta == pytest.approx(0.05) and 0 < c.low < 0.05 < c.high < 0.1
    assert (c.wins, c.losses, c.ties) == (20, 0, 20)
    assert paired_bootstrap(a, better) == c  # seeded: the same interval every time
    assert paired_bootstrap(better, a).delta == pytest.approx(-0.05)
    with pytest.raises(BadInputError, match="different queries"):
        paired_bootstrap(a, {"other": 1.0})
    with pytest.raises(BadInputError, match="confidence"):
        paired_bootstrap(a, better, confidence=1.5)


def test_oracle_run_is_the_ceiling():
    qrels, run = _random_case()
    best = oracle_run(run, qrels)
    assert all(set(best[q]) == set(run[q]) for q in run)  # same candidates, new order
    b, r = per_query_ndcg(best, qrels), per_query_ndcg(run, qrels)
    assert all(b[q] >= r[q] for q in r)
    rng = random.Random(0)
    for _ in range(20):  # no shuffle of the candidates beats it
        shuffled = {
            q: dict(zip(rng.sample(list(d), len(d)), d.values(), strict=True)) for q, d in run.items()
        }
        s = per_query_ndcg(shuffled, qrels)
        assert all(b[q] >= s[q] - 1e-12 for q in s)


def test_report_compares_every_pipeline_with_the_first(tmp_path):
    pytest.importorskip("ranx")
    qrels, run = _random_case()
    best = oracle_run(run, qrels)
    results = {
        name: PipelineResult(name, compute_metrics(r, qrels), [1.0], r)
        for name, r in (("base", run), ("oracle", best))
    }
    write_outputs(tmp_path, results, qrels, {"judgments": "j.csv"})
    comp = json.loads((tmp_path / "comparison.json").read_text())
    assert comp["baseline"] == "base" and set(comp["vs"]) == {"oracle"}
    o = comp["vs"]["oracle"]
    assert o["delta"] == pytest.approx(
        results["oracle"].metrics["ndcg@10"] - results["base"].metrics["ndcg@10"], abs=1e-4
    )
    assert o["low"] <= o["delta"] <= o["high"] and o["losses"] == 0
    assert "| oracle | +" in (tmp_path / "report.md").read_text()
