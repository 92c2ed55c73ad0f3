"""Offline evaluation of recommendations with a time-ordered hold-out, against two baselines.

For every shopper whose history has a conversion (``purchase`` or ``add_to_cart``) after at least
one earlier product event, the **last** conversion is the target; what the shopper did from that
moment on is removed from training, everyone else's events stay (leave-last-out). Then:

* ``user``: recommend k products for the shopper (products in the shopper's training history are
  excluded for every method: they are known already);
* ``similar``: recommend k products for the shopper's last training product (the anchor: the
  product page they were on); the anchor itself is excluded.

A hit is the target in the top k; nDCG@k with one relevant item is ``1 / log2(1 + rank)``.
Baselines computed on the same split: **popularity** (action-weighted counts) and **item-kNN**
(cosine between items over binary shopper-item vectors; a shopper is scored by the sum of
similarities to their history).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from indexer.events import Event
from ranker.signals.personalization import ACTION_WEIGHTS

CONVERSIONS = frozenset({"purchase", "add_to_cart"})


@dataclass(frozen=True)
class Case:
    client_id: str
    target: str
    history: tuple[str, ...]  # the shopper's training products, oldest first
    anchor: str  # the last training product


@dataclass
class Split:
    train: list[Event]
    cases: list[Case]


def leave_last_out(events: Iterable[Event], conversions: frozenset[str] = CONVERSIONS) -> Split:
    by_client: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.product_id is not None:
            by_client[e.client_id].append(e)
    train: list[Event] = []
    cases: list[Case] = []
    for cid in sorted(by_client):
        evs = sorted(by_client[cid], key=lambda e: (e.timestamp, e.product_id or ""))
        last = max((i for i, e in enumerate(evs) if e.action_name in conversions), default=None)
        if last is None or last == 0:
            train += evs
            continue
        t_cut = evs[last].timestamp
        before = [e for e in evs[:last] if e.timestamp < t_cut]
        history = tuple(dict.fromkeys(e.product_id for e in before if e.product_id is not None))
        if not history:
            train += evs
            continue
        train += before
        cases.append(Case(cid, str(evs[last].product_id), history, history[-1]))
    return Split(train, cases)


@dataclass
class Scores:
    hits: int = 0
    ndcg: float = 0.0
    cases: int = 0
    covered: set[str] = field(default_factory=set)

    def add(self, ranked: Sequence[str], target: str, k: int) -> None:
        self.cases += 1
        top = list(ranked[:k])
        self.covered.update(top)
        if target in top:
            self.hits += 1
            self.ndcg += 1.0 / math.log2(2 + top.index(target))

    def summary(self, catalog_size: int) -> dict[str, float]:
        n = max(1, self.cases)
        return {
            "hit_rate": self.hits / n,
            "ndcg": self.ndcg / n,
            "cases": float(self.cases),
            "coverage": len(self.covered) / max(1, catalog_size),
        }


class Popularity:
    def __init__(self, train: Sequence[Event], weights: Mapping[str, float] = ACTION_WEIGHTS):
        counts: dict[str, float] = defaultdict(float)
        for e in train:
            w = weights.get(e.action_name, 0.0)
            if e.product_id is not None and w > 0:
                counts[e.product_id] += w
        self.ranked = [p for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    def recommend(self, k: int, exclude: set[str]) -> list[str]:
        out = []
        for p in self.ranked:
            if p not in exclude:
                out.append(p)
                if len(out) == k:
                    break
        return out


class ItemKNN:
    """Cosine similarity of items over binary shopper vectors (positive-weight events)."""

    def __init__(self, train: Sequence[Event], weights: Mapping[str, float] = ACTION_WEIGHTS):
        pairs = {
            (e.client_id, e.product_id) for e in train if e.product_id and weights.get(e.action_name, 0.0) > 0
        }
        clients = sorted({c for c, _ in pairs})
        items = sorted({str(i) for _, i in pairs})
        self.items = items
        self.index = {p: j for j, p in enumerate(items)}
        cpos = {c: i for i, c in enumerate(clients)}
        rows = [cpos[c] for c, _ in pairs]
        cols = [self.index[str(i)] for _, i in pairs]
        m = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(clients), len(items)))
        norms = np.sqrt(np.asarray(m.sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        self.sim = (m.T @ m).tocsr().multiply(1.0 / norms[:, None]).multiply(1.0 / norms[None, :]).tocsr()
        self.sim.setdiag(0.0)
        self.sim.eliminate_zeros()

    def scores(self, history: Iterable[str]) -> np.ndarray:
        idx = [self.index[p] for p in history if p in self.index]
        if not idx:
            return np.zeros(len(self.items))
        return np.asarray(self.sim[idx].sum(axis=0)).ravel()

    def recommend(self, history: Iterable[str], k: int, exclude: set[str]) -> list[str]:
        s = self.scores(history)
        order = np.argsort(-s, kind="stable")
        out = []
        for j in order:
            if s[j] <= 0:
                break
            p = self.items[j]
            if p not in exclude:
                out.append(p)
                if len(out) == k:
                    break
        return out


Recommend = Callable[[Case, int], list[str]]


def evaluate(
    split: Split,
    methods: Mapping[str, tuple[Recommend, Recommend]],
    *,
    k: int = 10,
    catalog_size: int,
) -> dict[str, dict[str, dict[str, float]]]:
    """``methods``: name → (user recommender, similar recommender). Returns task → method → metrics."""
    out: dict[str, dict[str, dict[str, float]]] = {"user": {}, "similar": {}}
    for name, (user_fn, similar_fn) in methods.items():
        user, similar = Scores(), Scores()
        for case in split.cases:
            user.add(user_fn(case, k), case.target, k)
            similar.add(similar_fn(case, k), case.target, k)
        out["user"][name] = user.summary(catalog_size)
        out["similar"][name] = similar.summary(catalog_size)
    return out
