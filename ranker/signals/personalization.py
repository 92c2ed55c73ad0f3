"""What shopper events teach the ranker: per-shopper profiles, product popularity, co-interaction.

Built in memory from the event store (once at start, then incrementally as events arrive):

* **action weights**: a purchase says more than a click, an impression says nothing on its own,
  a declined product counts against it (``ACTION_WEIGHTS``, configurable);
* **time decay**: every weight halves after ``half_life_days``, kept exactly with one running sum
  per product (``Σ w·2^((t - anchor)/half_life)``), so updates are O(1);
* **popularity** of a product in [0, 1): ``m / (m + prior · m̄)`` with ``m`` its decayed mass and
  ``m̄`` the mean mass of products with events — a product with a few events stays near 0, and the
  scale does not depend on how old the log is;
* **profile** of a shopper: decayed action weight per product, per brand and per category; the
  profile vector is the weighted mean of the products' embeddings, and ``personal_affinity`` of a
  candidate is ``0.5 · cos(profile, product) + 0.25 · brand share + 0.25 · category share`` in
  [-0.5, 1];
* **co-interaction**: two products that one shopper both engaged with (positive weight) add
  ``min(w_a, w_b)`` to each other's count — "shoppers who viewed this also bought" — read out
  normalized like a cosine by the products' positive masses (``co / sqrt(m⁺_a · m⁺_b)``).

Popularity, trending and co-interaction are shared by every shopper, so they take each shopper's
*vote* (``ShopperProfile.votes``), bounded by :mod:`ranker.signals.influence` (trust, verification, caps
per shopper and per product-hour); the shopper's own profile takes every event they sent. Decayed
weights are kept relative to an anchor time that moves forward (everything rescaled) before the
factors could overflow, so no event date can break the model.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from indexer.events import Event
from ranker.signals.influence import InfluencePolicy, VoteLedger

ACTION_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "impression": 0.0,
        "product_hover": 0.2,
        "view": 0.3,
        "click": 1.0,
        "item_click": 1.0,
        "add_to_cart": 3.0,
        "purchase": 5.0,
        "declined_product": -1.0,
    }
)
# Actions that mean "already has it": excluded from that shopper's recommendations.
OWNED_ACTIONS = frozenset({"purchase"})
MAX_ITEMS_PER_CLIENT = 200  # co-interaction pairs come from a shopper's most recent items
REANCHOR_HALF_LIVES = 64.0  # rescale before decay factors pass 2^64


@dataclass(frozen=True)
class PersonalizationConfig:
    half_life_days: float = 30.0
    popularity_prior: float = 1.0  # in units of the mean product mass
    action_weights: Mapping[str, float] = field(default_factory=lambda: dict(ACTION_WEIGHTS))
    # A shopper not seen for this long has no profile any more (0: profiles never expire).
    profile_ttl_days: float = 0.0
    influence: InfluencePolicy = field(default_factory=InfluencePolicy)

    def __post_init__(self) -> None:
        if self.half_life_days <= 0:
            raise ValueError("half_life_days must be positive")
        if self.popularity_prior < 0:
            raise ValueError("popularity_prior must be ≥ 0")


@dataclass
class ShopperProfile:
    client_id: str
    items: dict[str, float] = field(default_factory=dict)  # product → decayed weight (at anchor)
    brands: dict[str, float] = field(default_factory=dict)
    categories: dict[str, float] = field(default_factory=dict)
    owned: set[str] = field(default_factory=set)
    last_seen: float = 0.0
    votes: dict[str, float] = field(default_factory=dict)  # product → bounded share of shared signals

    @property
    def empty(self) -> bool:
        return not any(w > 0 for w in self.items.values())

    @staticmethod
    def _share(weights: Mapping[str, float], key: str) -> float:
        pos = {k: w for k, w in weights.items() if w > 0}
        total = sum(pos.values())
        return pos.get(key.lower(), 0.0) / total if total > 0 else 0.0

    def brand_share(self, brand: str) -> float:
        """The share of the shopper's positive engagement that went to this brand."""
        return self._share(self.brands, brand)

    def category_share(self, category: str) -> float:
        return self._share(self.categories, category)


class EventModel:
    """Popularity, profiles and co-interactions from events; thread-safe, updated in place."""

    def __init__(
        self,
        config: PersonalizationConfig | None = None,
        brand_of: Callable[[str], str] | None = None,
        category_of: Callable[[str], str] | None = None,
    ):
        self.config = config or PersonalizationConfig()
        self._brand_of = brand_of or (lambda pid: "")
        self._category_of = category_of or (lambda pid: "")
        self._lock = threading.RLock()
        self._anchor: float | None = None
        self._mass: dict[str, float] = defaultdict(float)  # what popularity reads: trusted + earned
        self._trusted: dict[str, float] = defaultdict(float)  # decayed mass from trusted events
        self._untrusted: dict[str, float] = defaultdict(float)  # from verified browser events
        self._pos_mass: dict[str, float] = defaultdict(float)  # positive actions only
        self._profiles: dict[str, ShopperProfile] = {}
        self._co: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._seen: set[str] = set()  # event ids folded in: adding an event twice counts once
        self._ledger = VoteLedger(self.config.influence)
        self.events_seen = 0

    # -- time decay ---------------------------------------------------------------------------
    def _decay(self, t: float) -> float:
        """2^((t - anchor) / half-life): a weight at time t in anchor units."""
        assert self._anchor is not None
        exponent = (t - self._anchor) / (self.config.half_life_days * 86400.0)
        return 2.0 ** max(-1074.0, min(exponent, REANCHOR_HALF_LIVES))  # far older: 0, never an error

    def _advance(self, t: float) -> None:
        """Make ``t`` (the newest time of a batch) at most ``REANCHOR_HALF_LIVES`` past the anchor."""
        if self._anchor is None:
            self._anchor = t
        elif (t - self._anchor) / (self.config.half_life_days * 86400.0) > REANCHOR_HALF_LIVES:
            self._reanchor(t)

    def _reanchor(self, t: float) -> None:
        """Move the anchor to ``t``, rescaling every decayed weight (exact up to rounding)."""
        assert self._anchor is not None
        f = 2.0 ** -((t - self._anchor) / (self.config.half_life_days * 86400.0))
        self._anchor = t
        for d in (self._mass, self._pos_mass, self._trusted, self._untrusted):
            for k in d:
                d[k] *= f
        for prof in self._profiles.values():
            for m in (prof.items, prof.brands, prof.categories, prof.votes):
                for k in m:
                    m[k] *= f
        for row in self._co.values():
            for k in row:
                row[k] *= f

    def weight(self, action: str) -> float:
        return float(self.config.action_weights.get(action, 0.0))

    # -- updates ------------------------------------------------------------------------------
    def add(self, events: Iterable[Event]) -> int:
        """Fold events in (each event id once); events without a catalog product only update the
        shopper's last seen. Returns how many were new."""
        n = 0
        with self._lock:
            touched: dict[str, dict[str, float]] = {}
            ledger = self._ledger
            batch = sorted(
                (e for e in events if math.isfinite(e.effective_time)), key=lambda e: e.effective_time
            )
            if batch:
                self._advance(batch[-1].effective_time)
            for e in batch:
                if e.id in self._seen:
                    continue
                self._seen.add(e.id)
                t = e.effective_time
                prof = self._profiles.setdefault(e.client_id, ShopperProfile(e.client_id))
                prof.last_seen = max(prof.last_seen, t)
                n += 1
                w = self.weight(e.action_name)
                if e.product_id is None or w == 0.0:
                    continue
                scale = self._decay(t)
                dw = w * scale
                prof.items[e.product_id] = prof.items.get(e.product_id, 0.0) + dw
                brand = self._brand_of(e.product_id).lower()
                if brand:
                    prof.brands[brand] = prof.brands.get(brand, 0.0) + dw
                category = self._category_of(e.product_id).lower()
                if category:
                    prof.categories[category] = prof.categories.get(category, 0.0) + dw
                if e.action_name in OWNED_ACTIONS:
                    prof.owned.add(e.product_id)
                if not ledger.counts(trusted=e.trusted, verified=e.verified):
                    continue
                if e.client_id not in touched:
                    touched[e.client_id] = dict(prof.votes)
                delta = ledger.vote(
                    prof.votes,
                    e.product_id,
                    w,
                    scale,
                    trusted=e.trusted,
                    arrival=e.received if e.received is not None else t,
                )
                if delta == 0.0:
                    continue
                prof.votes[e.product_id] = prof.votes.get(e.product_id, 0.0) + delta
                pid = e.product_id
                (self._trusted if e.trusted else self._untrusted)[pid] += delta
                self._mass[pid] = self._trusted[pid] + min(
                    self._untrusted[pid], ledger.earned(self._trusted[pid], scale)
                )
                if delta > 0:
                    self._pos_mass[pid] += delta
            for cid, before in touched.items():
                self._update_co(before, self._profiles[cid].votes)
            self.events_seen += n
        return n

    def _pairs(self, items: Mapping[str, float]) -> dict[tuple[str, str], float]:
        pos = sorted(((w, p) for p, w in items.items() if w > 0), reverse=True)[:MAX_ITEMS_PER_CLIENT]
        out = {}
        for i, (wa, a) in enumerate(pos):
            for wb, b in pos[i + 1 :]:
                out[(a, b)] = min(wa, wb)
        return out

    def _update_co(self, before: Mapping[str, float], after: Mapping[str, float]) -> None:
        for (a, b), w in self._pairs(before).items():
            self._co[a][b] -= w
            self._co[b][a] -= w
        for (a, b), w in self._pairs(after).items():
            self._co[a][b] += w
            self._co[b][a] += w

    def client_ids(self) -> list[str]:
        """The shoppers with a profile."""
        with self._lock:
            return list(self._profiles)

    def forget_client(self, client_id: str) -> bool:
        """Drop a shopper's profile and their part of co-interactions (popularity keeps the
        anonymous, aggregate mass). True when there was a profile."""
        with self._lock:
            prof = self._profiles.pop(client_id, None)
            if prof is None:
                return False
            self._update_co(prof.votes, {})
            return True

    # -- reads --------------------------------------------------------------------------------
    def profile(self, client_id: str, now: float | None = None) -> ShopperProfile | None:
        """The shopper's profile; None for an unknown shopper or one unseen for longer than
        ``profile_ttl_days`` before ``now`` (default: the current time)."""
        with self._lock:
            prof = self._profiles.get(client_id)
        ttl = self.config.profile_ttl_days * 86400.0
        if prof is not None and ttl > 0:
            t = time.time() if now is None else now
            if prof.last_seen < t - ttl:
                return None
        return prof

    def popularity(self, ids: Sequence[str]) -> dict[str, float]:
        with self._lock:
            masses = [m for m in self._mass.values() if m > 0]
            if not masses:
                return {}
            mean = sum(masses) / len(masses)
            prior = self.config.popularity_prior * mean
            out = {}
            for i in ids:
                m = self._mass.get(i, 0.0)
                if m > 0:
                    out[i] = m / (m + prior) if m + prior > 0 else 0.0
            return out

    def trending(self, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        skip = set(exclude)
        with self._lock:
            ranked = sorted(((m, p) for p, m in self._mass.items() if m > 0 and p not in skip), reverse=True)
        pop = self.popularity([p for _, p in ranked[:k]])
        return [(p, pop.get(p, 0.0)) for _, p in ranked[:k]]

    def _cosine_row(self, a: str) -> dict[str, float]:
        """Co-interaction of ``a`` with each product, normalized like a cosine:
        ``co(a, b) / sqrt(m⁺(a) · m⁺(b))`` with ``m⁺`` the positive (decayed) mass, so that merely
        popular products do not link to everything."""
        ma = self._pos_mass.get(a, 0.0)
        if ma <= 0:
            return {}
        out = {}
        for b, w in self._co.get(a, {}).items():
            mb = self._pos_mass.get(b, 0.0)
            if w > 1e-12 and mb > 0:
                out[b] = w / math.sqrt(ma * mb)
        return out

    def co_interactions(self, product_id: str, k: int = 50) -> dict[str, float]:
        """Products engaged with by the same shoppers (cosine-normalized), as a share of the
        strongest link."""
        with self._lock:
            row = self._cosine_row(product_id)
        if not row:
            return {}
        top = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        best = top[0][1]
        return {p: w / best for p, w in top}

    def co_scores(self, profile: ShopperProfile, k: int = 100, max_items: int = 50) -> dict[str, float]:
        """Collaborative score of products for a shopper: the co-interaction rows of their
        strongest ``max_items`` products, weighted by their share of the profile, as a share of
        the best product."""
        items = sorted(((w, p) for p, w in profile.items.items() if w > 0), reverse=True)[:max_items]
        total = sum(w for w, _ in items)
        if total <= 0:
            return {}
        acc: dict[str, float] = defaultdict(float)
        with self._lock:
            for w, p in items:
                for q, c in self._cosine_row(p).items():
                    acc[q] += (w / total) * c
        if not acc:
            return {}
        top = sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        best = top[0][1]
        return {p: v / best for p, v in top}

    def profile_vector(self, profile: ShopperProfile, vectors: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Weighted mean of the embeddings of the products the shopper engaged with, unit length."""
        acc = None
        for p, w in profile.items.items():
            v = vectors.get(p)
            if v is None or w <= 0:
                continue
            acc = (
                w * np.asarray(v, dtype=np.float64)
                if acc is None
                else acc + w * np.asarray(v, dtype=np.float64)
            )
        if acc is None:
            return None
        norm = float(np.linalg.norm(acc))
        return (acc / norm).astype(np.float32) if norm > 0 else None

    def affinity(
        self,
        profile: ShopperProfile,
        candidates: Mapping[str, np.ndarray],
        brands: Mapping[str, str],
        profile_vector: np.ndarray | None,
        categories: Mapping[str, str] | None = None,
    ) -> dict[str, float]:
        """``personal_affinity`` per candidate: half embedding cosine, a quarter each brand and
        category share."""
        categories = categories or {}
        out = {}
        for pid, v in candidates.items():
            cos = 0.0
            if profile_vector is not None:
                nv = float(np.linalg.norm(v))
                cos = float(np.dot(profile_vector, v) / nv) if nv > 0 else 0.0
            brand = profile.brand_share(brands.get(pid, ""))
            category = profile.category_share(categories.get(pid, ""))
            out[pid] = 0.5 * max(-1.0, min(1.0, cos)) + 0.25 * brand + 0.25 * category
        return out
