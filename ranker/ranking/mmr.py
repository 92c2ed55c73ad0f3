"""Maximal Marginal Relevance (MMR) re-ordering of a candidate list, in torch, batched.

Greedy MMR picks, at each step, the remaining candidate with the largest

    lam * rel_i - (1 - lam) * max_{j in selected} cos(i, j)

(the max-similarity term is 0 for the first pick). Ties break by the lower candidate index.
``lam = 1`` is a plain sort by relevance; ``lam = 0`` maximizes novelty after the first pick.
Each step is one batched matrix-vector product that updates a running max-similarity vector,
so a whole batch costs O(k * n * d). Torch is imported inside the functions only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.embedding.embedders import resolve_device
from indexer.errors import BadInputError

log = logging.getLogger(__name__)

_EPS = 1e-12


@dataclass(frozen=True)
class MMRResult:
    """One request's MMR order; the lists are aligned with ``order``.

    ``mmr_scores[r]`` is the objective value when ``order[r]`` was picked, ``penalties[r]`` the
    ``(1 - lam) * max_similarity[r]`` subtracted from it, and ``max_similarity[r]`` the raw max cosine
    to the items picked before it (0.0 for the first pick).
    """

    order: list[int]
    mmr_scores: list[float]
    penalties: list[float]
    max_similarity: list[float]


def normalize_relevance(x: Any) -> np.ndarray:
    """Min-max scale scores to [0, 1] along the last axis; a constant row becomes all ones."""
    arr = _to_numpy(x, "relevance")
    if arr.ndim == 0:
        raise BadInputError("relevance must be a 1-D array of scores (or 2-D: one row per request)")
    if arr.size == 0:
        return arr
    if not np.isfinite(arr).all():
        raise BadInputError("relevance contains NaN or infinite scores; replace them before normalizing")
    lo = arr.min(axis=-1, keepdims=True)
    span = arr.max(axis=-1, keepdims=True) - lo
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (arr - lo) / safe, 1.0)


def mmr(relevance: Any, embeddings: Any, k: int, lam: float, *, device: str = "auto") -> MMRResult:
    """MMR order of one request: ``relevance`` [n], ``embeddings`` [n, d] (numpy or torch)."""
    rel = _to_numpy(relevance, "relevance") if not _is_tensor(relevance) else relevance
    emb = _to_numpy(embeddings, "embeddings") if not _is_tensor(embeddings) else embeddings
    if rel.ndim != 1:
        raise BadInputError(f"relevance must be 1-D [n] for mmr, got shape {tuple(rel.shape)}; use mmr_batch")
    if emb.ndim != 2:
        raise BadInputError(f"embeddings must be 2-D [n, d] for mmr, got shape {tuple(emb.shape)}")
    return mmr_batch(rel[None], emb[None], k, lam, None, device=device)[0]


def mmr_batch(
    relevance: Any,
    embeddings: Any,
    k: int,
    lam: float,
    mask: Any | None = None,
    device: str = "auto",
) -> list[MMRResult]:
    """MMR order of B requests padded to the same n.

    ``relevance`` [B, n], ``embeddings`` [B, n, d], ``mask`` [B, n] (true = real candidate; None: all
    real). Padded positions are never picked and may hold anything. ``k`` is clipped per request to
    its number of real candidates. Computation is float64 on ``resolve_device(device)``.
    """
    import torch

    _check_k_lam(k, lam)
    dev = torch.device(resolve_device(device))
    rel = _as_tensor(relevance, "relevance", dev, torch.float64)
    emb = _as_tensor(embeddings, "embeddings", dev, torch.float64)
    if rel.dim() != 2:
        raise BadInputError(f"relevance must be 2-D [B, n], got shape {tuple(rel.shape)}")
    if emb.dim() != 3 or emb.shape[:2] != rel.shape:
        raise BadInputError(
            f"embeddings must be [B, n, d] matching relevance {tuple(rel.shape)}, got {tuple(emb.shape)}"
        )
    if emb.shape[2] < 1:
        raise BadInputError("embeddings have dimension 0; pass vectors with d >= 1")
    B, n = rel.shape
    if mask is None:
        valid = torch.ones((B, n), dtype=torch.bool, device=dev)
    else:
        valid = _as_tensor(mask, "mask", dev, None)
        if tuple(valid.shape) != (B, n):
            raise BadInputError(f"mask must have shape [B, n] = {(B, n)}, got {tuple(valid.shape)}")
        valid = valid != 0
    if B == 0:
        return []
    if not bool(torch.isfinite(rel[valid]).all()):
        raise BadInputError("relevance contains NaN or infinite scores; drop or fix those candidates")
    if not bool(torch.isfinite(emb[valid]).all()):
        raise BadInputError("embeddings contain NaN or infinite values; drop or fix those candidates")

    rel = torch.where(valid, rel, 0.0)
    emb = torch.where(valid[..., None], emb, 0.0)
    emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(_EPS)

    counts = valid.sum(dim=1)
    k_row = counts.clamp(max=k)
    steps = int(k_row.max().item()) if n else 0
    log.debug("mmr: B=%d n=%d d=%d k=%d lam=%.3f steps=%d on %s", B, n, emb.shape[2], k, lam, steps, dev)

    rows = torch.arange(B, device=dev)
    lam_rel = lam * rel
    available = valid.clone()
    max_sim = torch.zeros((B, n), dtype=torch.float64, device=dev)
    picks = torch.zeros((B, steps), dtype=torch.long, device=dev)
    scores = torch.zeros((B, steps), dtype=torch.float64, device=dev)
    pens = torch.zeros((B, steps), dtype=torch.float64, device=dev)
    sims = torch.zeros((B, steps), dtype=torch.float64, device=dev)
    neg_inf = torch.tensor(-math.inf, dtype=torch.float64, device=dev)
    for t in range(steps):
        penalty = (1.0 - lam) * max_sim
        objective = torch.where(available, lam_rel - penalty, neg_inf)
        best = objective.argmax(dim=1)  # first maximal index on ties: the lower candidate index
        picks[:, t] = best
        scores[:, t] = objective[rows, best]
        pens[:, t] = penalty[rows, best]
        sims[:, t] = max_sim[rows, best]
        available[rows, best] = False
        sim_new = torch.bmm(emb, emb[rows, best].unsqueeze(-1)).squeeze(-1)  # [B, n]
        max_sim = sim_new if t == 0 else torch.maximum(max_sim, sim_new)

    picks_l, scores_l, pens_l, sims_l = (x.cpu().tolist() for x in (picks, scores, pens, sims))
    out = []
    for b, kb in enumerate(k_row.cpu().tolist()):
        out.append(
            MMRResult(
                order=picks_l[b][:kb],
                mmr_scores=scores_l[b][:kb],
                penalties=pens_l[b][:kb],
                max_similarity=sims_l[b][:kb],
            )
        )
    return out


def _check_k_lam(k: int, lam: float) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise BadInputError(f"k must be an integer >= 1 (how many items to select), got {k!r}")
    if isinstance(lam, bool) or not isinstance(lam, int | float | np.floating | np.integer):
        raise BadInputError(f"lam must be a number in [0, 1], got {lam!r}")
    if not (0.0 <= float(lam) <= 1.0):
        raise BadInputError(f"lam must be in [0, 1] (1 = pure relevance, 0 = pure diversity), got {lam!r}")


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if _is_tensor(x):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{name} must be a numeric array (numpy, torch or nested lists): {exc}") from None
    return arr


def _as_tensor(x: Any, name: str, dev: Any, dtype: Any) -> Any:
    import torch

    if _is_tensor(x):
        t = x.detach()
        if dtype is not None and (t.is_complex() or t.dtype == torch.bool):
            raise BadInputError(f"{name} must be a real-valued tensor, got dtype {t.dtype}")
        return t.to(device=dev, dtype=dtype) if dtype is not None else t.to(device=dev)
    if dtype is None:
        arr = np.asarray(x)
        if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.number)):
            raise BadInputError(f"{name} must be a boolean array, got dtype {arr.dtype}")
        return torch.as_tensor(arr, device=dev)
    return torch.as_tensor(_to_numpy(x, name), dtype=dtype, device=dev)


__all__ = ["MMRResult", "mmr", "mmr_batch", "normalize_relevance"]
