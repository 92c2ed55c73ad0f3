"""Score fusion of several ranked candidate lists: reciprocal-rank fusion and weighted min-max."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from indexer.errors import BadInputError
from ranker.base import Choice, Scored


class Fusion(Choice):
    RRF = "rrf"
    MINMAX = "minmax"


def rrf(
    lists: Mapping[str, Sequence[Scored]], *, k: float = 60.0, weights: Mapping[str, float] | None = None
) -> list[Scored]:
    """Reciprocal-rank fusion: sum over lists of w / (k + rank), rank 1-based. Ties: by id."""
    if k <= 0:
        raise BadInputError("rrf k must be > 0")
    fused: dict[str, float] = {}
    for name, items in lists.items():
        w = 1.0 if weights is None else float(weights.get(name, 0.0))
        if w == 0:
            continue
        for rank, s in enumerate(items, start=1):
            fused[s.id] = fused.get(s.id, 0.0) + w / (k + rank)
    return sorted((Scored(i, v) for i, v in fused.items()), key=lambda s: (-s.score, s.id))


def minmax(
    lists: Mapping[str, Sequence[Scored]], *, weights: Mapping[str, float] | None = None
) -> list[Scored]:
    """Weighted sum of per-list min-max normalized scores; absent from a list contributes 0.

    A list whose scores are all equal normalizes to 1.0 for each of its items.
    """
    fused: dict[str, float] = {}
    for name, items in lists.items():
        w = 1.0 if weights is None else float(weights.get(name, 0.0))
        if w == 0 or not items:
            continue
        lo = min(s.score for s in items)
        hi = max(s.score for s in items)
        span = hi - lo
        for s in items:
            norm = 1.0 if span == 0 else (s.score - lo) / span
            fused[s.id] = fused.get(s.id, 0.0) + w * norm
        for s in items:
            fused.setdefault(s.id, 0.0)
    return sorted((Scored(i, v) for i, v in fused.items()), key=lambda s: (-s.score, s.id))
