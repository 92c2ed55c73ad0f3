"""Diversity metrics of a ranked list, for evaluation: intra-list diversity and distinct counts.

Plain numpy; vectors are L2-normalized here again (cosine = dot), a zero vector has cosine 0 to all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from indexer.errors import BadInputError

log = logging.getLogger(__name__)

_EPS = 1e-12


def intra_list_diversity(embeddings: Any) -> float:
    """Mean over unordered pairs i < j of ``1 - cos(e_i, e_j)``; 0.0 for fewer than two items."""
    emb = _matrix(embeddings)
    n = emb.shape[0]
    if n < 2:
        return 0.0
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.maximum(norms, _EPS)
    sim = unit @ unit.T
    iu = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - sim[iu]))


def distinct_count(values: Iterable[str | None]) -> int:
    """How many distinct values, case-insensitive and whitespace-trimmed; None and empty are ignored."""
    seen = set()
    for v in values:
        if v is None:
            continue
        key = str(v).strip().casefold()
        if key:
            seen.add(key)
    return len(seen)


def diversity_metrics(embeddings: Any, brands: Sequence[str | None], k: int = 10) -> dict[str, float]:
    """``ild@k`` and ``distinct_brands@k`` over the first ``k`` items of a ranked list.

    ``embeddings`` [n, d] and ``brands`` [n] are aligned with the ranking (item 0 ranked first).
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise BadInputError(f"k must be an integer >= 1 (the list cut-off), got {k!r}")
    emb = _matrix(embeddings)
    if len(brands) != emb.shape[0]:
        raise BadInputError(
            f"brands ({len(brands)}) and embeddings ({emb.shape[0]}) must describe the same ranked items; "
            "pass one brand (or None) per item"
        )
    return {
        f"ild@{k}": intra_list_diversity(emb[:k]),
        f"distinct_brands@{k}": distinct_count(list(brands)[:k]),
    }


def _matrix(embeddings: Any) -> np.ndarray:
    if hasattr(embeddings, "detach"):  # a torch tensor, without importing torch here
        embeddings = embeddings.detach().cpu().numpy()
    try:
        emb = np.asarray(embeddings, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"embeddings must be a numeric [n, d] array: {exc}") from None
    if emb.ndim == 1 and emb.size == 0:
        return emb.reshape(0, 0)
    if emb.ndim != 2:
        raise BadInputError(f"embeddings must be 2-D [n, d], got shape {emb.shape}")
    if not np.isfinite(emb).all():
        raise BadInputError("embeddings contain NaN or infinite values; drop or fix those items")
    return emb
