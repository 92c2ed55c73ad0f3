"""How much one event may move what every shopper sees (popularity, trending, "also bought").

Events come from browsers, and anyone can post one, so a ranking signal built from them must be
earned, not posted (the README's threat model). The rules, applied by
:class:`~ranker.signals.personalization.EventModel` to the shared signals only (a shopper's own profile
still learns from everything they do):

* **trust**: events the shop's backend sends (admin key, ``shoprank events ingest``) are trusted;
  browser events are not. An untrusted event weighs at most a click (``untrusted_max_weight``): a
  browser cannot report a purchase.
* **verification**: an untrusted event counts only when it names a product that the service
  showed that same shopper for the event's ``query_id`` (the ubi_queries record of that search);
  fabricated events without a real search behind them move nothing.
* **one shopper, one bounded vote**: a shopper's total influence on one product is capped
  (``client_product_cap`` for trusted events, ``untrusted_client_product_cap`` otherwise), so
  repeating an action adds nothing past the cap.
* **a burst of new shoppers is rate-limited**: per product, untrusted votes are capped per hour of
  arrival (``untrusted_product_hourly``), so a thousand fresh client ids in one second add at most
  that much.
* **browser votes are backed by sales**: the popularity mass a product takes from untrusted votes
  is at most ``earned_ratio`` × its trusted mass (what the shop's backend reported) plus
  ``earned_floor``: a product nobody bought can be lifted by browsers only that far.
* **time as the server saw it**: an untrusted event is dated no later than its arrival, so a
  future date cannot outweigh every other event (and parsing refuses dates beyond the clock skew).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

HOUR_S = 3600.0
KEEP_HOURS = 48  # rate buckets older than this (behind the newest) are dropped
MAX_BUCKETS = 100_000


@dataclass(frozen=True)
class InfluencePolicy:
    untrusted_max_weight: float = 1.0  # a browser's add_to_cart or purchase counts as a click
    client_product_cap: float = 5.0  # trusted: one shopper's most on one product (a purchase)
    untrusted_client_product_cap: float = 1.0  # untrusted: one click's worth
    untrusted_product_hourly: float = 5.0  # untrusted votes a product may gain per hour
    require_verified: bool = True  # untrusted events count only when their search showed them
    earned_ratio: float = 1.0  # untrusted mass counted ≤ ratio × trusted mass + floor
    earned_floor: float = 2.0  # (in votes, i.e. clicks)

    def __post_init__(self) -> None:
        for name in ("untrusted_max_weight", "client_product_cap", "untrusted_client_product_cap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0")
        for name in ("untrusted_product_hourly", "earned_ratio", "earned_floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0")


class VoteLedger:
    """Applies an :class:`InfluencePolicy` to one event at a time (not thread-safe: the event
    model holds its lock). Votes are kept in the event model's decayed units; ``scale`` is the
    decay factor of the event's time, so caps hold in the units of that moment."""

    def __init__(self, policy: InfluencePolicy):
        self.policy = policy
        self._used: dict[tuple[str, int], float] = {}  # (product, arrival hour) → untrusted votes
        self._newest_hour = 0

    def earned(self, trusted_mass: float, scale: float) -> float:
        """The most untrusted mass a product with this trusted mass may count (decayed units;
        ``scale`` is the decay factor now, so the floor holds in current units)."""
        return self.policy.earned_ratio * max(0.0, trusted_mass) + self.policy.earned_floor * scale

    def counts(self, *, trusted: bool, verified: bool) -> bool:
        return trusted or verified or not self.policy.require_verified

    def vote(
        self,
        votes: Mapping[str, float],
        product: str,
        weight: float,
        scale: float,
        *,
        trusted: bool,
        arrival: float,
    ) -> float:
        """The change to this shopper's vote on ``product`` (decayed units) for an event of
        action ``weight`` whose decay factor is ``scale``."""
        p = self.policy
        if not trusted:
            weight = min(weight, p.untrusted_max_weight)
        cap = (p.client_product_cap if trusted else p.untrusted_client_product_cap) * scale
        old = votes.get(product, 0.0)
        new = max(-cap, min(cap, old + weight * scale))
        delta = new - old
        if trusted or delta <= 0 or scale <= 0:
            return delta
        hour = int(arrival // HOUR_S)
        self._prune(hour)
        key = (product, hour)
        room = max(0.0, p.untrusted_product_hourly - self._used.get(key, 0.0))
        allowed = min(delta / scale, room)
        if allowed > 0:
            self._used[key] = self._used.get(key, 0.0) + allowed
        return allowed * scale

    def _prune(self, hour: int) -> None:
        self._newest_hour = max(self._newest_hour, hour)
        if len(self._used) > MAX_BUCKETS:
            floor = self._newest_hour - KEEP_HOURS
            self._used = {k: v for k, v in self._used.items() if k[1] >= floor}
