"""How far to trust a difference between two rankers on a small judged query set.

With about a hundred judged queries, a mean nDCG@10 gap of a few hundredths can be noise. These
helpers give per-query nDCG@10 (the same linear-gain, unjudged = 0 definition ranx uses in
:func:`ranker.evaluation.relevance.compute_metrics`), a paired bootstrap confidence interval for the mean
difference between two runs over the same queries, and the ceiling of a reranker: the candidates
of a run put in their judged order (the best any reranker of those candidates can score).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from indexer.errors import BadInputError
from ranker.evaluation.relevance import Qrels, Run


def _top(docs: dict[str, float], k: int) -> list[str]:
    return [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def per_query_ndcg(run: Run, qrels: Qrels, k: int = 10) -> dict[str, float]:
    """nDCG@k per query that has a relevant judgment (rating > 0); a query the run lacks scores 0."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    out = {}
    for q, judged in qrels.items():
        ideal = sorted((r for r in judged.values() if r > 0), reverse=True)[:k]
        if not ideal:
            continue
        gains = [judged.get(d, 0) for d in _top(run.get(q) or {}, k)]
        dcg = float(np.dot(gains, disc[: len(gains)]))
        out[q] = dcg / float(np.dot(ideal, disc[: len(ideal)]))
    return out


@dataclass(frozen=True)
class Comparison:
    """``b`` minus ``a``: mean per-query difference with a paired bootstrap interval."""

    queries: int
    mean_a: float
    mean_b: float
    delta: float
    low: float
    high: float
    confidence: float
    wins: int  # queries where b scores higher
    losses: int
    ties: int

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def paired_bootstrap(
    a: dict[str, float],
    b: dict[str, float],
    *,
    samples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Resample the queries (with replacement) ``samples`` times; the interval is the central
    ``confidence`` share of the resampled mean differences. Deterministic for a given seed."""
    if set(a) != set(b):
        raise BadInputError(
            f"the two runs cover different queries ({len(set(a) ^ set(b))} differ); compare runs "
            "over the same judged queries"
        )
    if not a:
        raise BadInputError("no queries to compare")
    if not 0 < confidence < 1 or samples < 1:
        raise BadInputError("need 0 < confidence < 1 and samples >= 1")
    qs = sorted(a)
    va = np.array([a[q] for q in qs])
    vb = np.array([b[q] for q in qs])
    d = vb - va
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(samples, len(d)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Comparison(
        queries=len(qs),
        mean_a=float(va.mean()),
        mean_b=float(vb.mean()),
        delta=float(d.mean()),
        low=float(low),
        high=float(high),
        confidence=confidence,
        wins=int((d > 1e-12).sum()),
        losses=int((d < -1e-12).sum()),
        ties=int((np.abs(d) <= 1e-12).sum()),
    )


def oracle_run(run: Run, qrels: Qrels) -> Run:
    """Each query's candidates reordered by judged rating (unjudged count as 0), ties kept in the
    run's order: the ceiling of any reranker over these candidates, on these judgments."""
    out: Run = {}
    for q, docs in run.items():
        judged = qrels.get(q, {})
        ranked = sorted(docs, key=lambda d: (-judged.get(d, 0), -docs[d], d))
        out[q] = {d: float(len(ranked) - i) for i, d in enumerate(ranked)}
    return out
