"""Learned, explainable feature fusion: a linear scorer trained with a learning-to-rank loss
(pairwise logistic, or listwise ListNet).

``score = bias + Σ_f weight_f · feature_f``, so each feature's contribution ``weight_f · feature_f``
is its part of the final score and the parts add up exactly. Weights are learned from graded
judgments (every pair of candidates of one query with different grades is a training pair) and can
be overridden per request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from indexer.errors import BadInputError, IndexMismatchError
from ranker.ranking.features import FEATURES

KIND = "linear-fusion"


@dataclass(frozen=True)
class LinearFusion:
    weights: Mapping[str, float]
    bias: float = 0.0
    meta: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FEATURES))
        if unknown:
            raise BadInputError(f"unknown fusion feature(s) {unknown}; choose from {', '.join(FEATURES)}")

    def vector(self) -> np.ndarray:
        return np.asarray([float(self.weights.get(f, 0.0)) for f in FEATURES])

    def with_overrides(self, overrides: Mapping[str, float] | None) -> LinearFusion:
        """Per-request weights: given features replace the learned ones, the rest stay."""
        if not overrides:
            return self
        return LinearFusion({**self.weights, **overrides}, self.bias, self.meta)

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.vector() + self.bias

    def contributions(self, x: np.ndarray) -> list[dict[str, float]]:
        """Per row: feature → weight × value (plus ``bias``); the values sum to :meth:`score`."""
        w = self.vector()
        return [
            {**{f: float(w[j] * row[j]) for j, f in enumerate(FEATURES)}, "bias": float(self.bias)}
            for row in np.asarray(x, dtype=np.float64)
        ]

    def save(self, path: str | Path) -> None:
        """Write the model whole or not at all (a temporary file, then an atomic rename)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(
            json.dumps({"kind": KIND, "features": list(FEATURES), **asdict(self)}, indent=2, default=str)
        )
        tmp.replace(target)

    @classmethod
    def load(cls, path: str | Path) -> LinearFusion:
        data = json.loads(Path(path).read_text())
        if data.get("kind") != KIND:
            raise IndexMismatchError(
                f"{path} is not a shoprank fusion model; train one with `shoprank train fusion`"
            )
        saved = data.get("features")
        if not isinstance(saved, list) or not set(saved) <= set(FEATURES):
            raise IndexMismatchError(
                f"{path} was trained on features {saved}; this shoprank uses {list(FEATURES)}: retrain it"
            )
        # A model saved before features were added keeps its meaning: the new ones weigh 0.
        return cls(data["weights"], float(data.get("bias", 0.0)), data.get("meta", {}))


def pairwise_examples(
    groups: Sequence[tuple[np.ndarray, Sequence[float]]],
) -> tuple[np.ndarray, np.ndarray]:
    """Feature differences x_i - x_j with target 1 for every pair with grade_i > grade_j (and
    the mirrored pair with target 0), within each query's group."""
    diffs, ys = [], []
    for x, grades in groups:
        g = np.asarray(grades, dtype=np.float64)
        i, j = np.nonzero(g[:, None] > g[None, :])
        if i.size:
            d = x[i] - x[j]
            diffs += [d, -d]
            ys += [np.ones(len(d)), np.zeros(len(d))]
    if not diffs:
        raise BadInputError(
            "no pair of candidates with different grades: need graded judgments to learn fusion"
        )
    return np.vstack(diffs), np.concatenate(ys)


def fit_pairwise(
    groups: Sequence[tuple[np.ndarray, Sequence[float]]],
    *,
    l2: float = 1e-2,
    lr: float = 0.5,
    epochs: int = 300,
    seed: int = 13,
    features: Sequence[str] | None = None,
) -> LinearFusion:
    """Pairwise logistic regression (RankNet with a linear scorer), full-batch gradient descent.

    ``features`` restricts learning to those features (the others keep weight 0). The bias cancels
    in pairwise differences, so it stays 0.
    """
    use, mask = _mask(features)
    d, y = pairwise_examples(groups)
    d = d * mask
    rng = np.random.default_rng(seed)
    w = np.asarray(rng.normal(0, 1e-3, d.shape[1]), dtype=np.float64)
    for _ in range(epochs):
        z = d @ w
        p = 1.0 / (1.0 + np.exp(-z))
        grad = d.T @ (p - y) / len(y) + l2 * w
        w -= lr * grad
    weights = {f: float(w[j] * mask[j]) for j, f in enumerate(FEATURES)}
    return LinearFusion(weights, 0.0, {"pairs": int(len(y) // 2), "features": use, "objective": "pairwise"})


def _mask(features: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    use = list(FEATURES) if features is None else list(features)
    unknown = sorted(set(use) - set(FEATURES))
    if unknown or not use:
        raise BadInputError(f"unknown fusion feature(s) {unknown or use}; choose from {', '.join(FEATURES)}")
    return use, np.asarray([f in use for f in FEATURES], dtype=np.float64)


def fit_listnet(
    groups: Sequence[tuple[np.ndarray, Sequence[float]]],
    *,
    l2: float = 1e-3,
    lr: float = 0.5,
    epochs: int = 500,
    features: Sequence[str] | None = None,
) -> LinearFusion:
    """ListNet (top-one cross entropy) with a linear scorer, full-batch gradient descent.

    Per query, the softmax of the scores is pulled towards the softmax of the gains ``2^grade - 1``,
    so the loss is dominated by getting the best products to the top, which is what nDCG@10
    rewards; the pairwise loss weighs a swap at rank 90 like one at rank 1. Deterministic (starts
    from zero weights). The bias does not change a query's softmax, so it stays 0.
    """
    use, mask = _mask(features)
    prepared = []
    for x, grades in groups:
        g = np.asarray(grades, dtype=np.float64)
        if len(g) < 2 or g.max() == g.min():
            continue
        t = np.exp(2.0**g - 1.0 - (2.0 ** g.max() - 1.0))
        prepared.append((np.asarray(x, dtype=np.float64) * mask, t / t.sum()))
    if not prepared:
        raise BadInputError(
            "no query with candidates of different grades: need graded judgments to learn fusion"
        )
    w = np.zeros(len(FEATURES), dtype=np.float64)
    for _ in range(epochs):
        grad = np.zeros_like(w)
        for x, target in prepared:
            s = x @ w
            p = np.exp(s - s.max())
            grad += x.T @ (p / p.sum() - target)
        w -= lr * (grad / len(prepared) + l2 * w)
    weights = {f: float(w[j] * mask[j]) for j, f in enumerate(FEATURES)}
    return LinearFusion(weights, 0.0, {"queries": len(prepared), "features": use, "objective": "listnet"})


OBJECTIVES = MappingProxyType({"pairwise": fit_pairwise, "listnet": fit_listnet})


def fit_fusion(
    objective: str,
    groups: Sequence[tuple[np.ndarray, Sequence[float]]],
    *,
    features: Sequence[str] | None = None,
) -> LinearFusion:
    """Fit with the named objective (``choose from`` :data:`OBJECTIVES`)."""
    try:
        fit = OBJECTIVES[objective]
    except KeyError:
        raise BadInputError(
            f"unknown fusion objective {objective!r}; choose from {', '.join(OBJECTIVES)}"
        ) from None
    return fit(groups, features=features)
