"""Search results of the requests asked last, so a storefront's head queries are answered once
per state of the shop rather than once per shopper.

An entry's key holds the request and the state of the shop its answer depends on besides it:
the index's generation (every product write moves it), the event epoch (every event the model
folds in moves it) and the vocabulary's generation (every rebuild moves it). The cache adopts a
new state at most every ``refresh_s`` seconds (``SHOPRANK_RESULT_CACHE_REFRESH_S``, 1 s by
default), as a search engine refreshes its searchers at an interval: a shop that streams price
updates and a storefront that sends clicks keep their head queries cached, and every write or
event shows in anonymous answers within ``refresh_s``. Once adopted, no older entry can match;
old entries age out of the bounded LRU. ``refresh_s`` 0 adopts every change at once. Requests
that carry a shopper (``user_id`` or affinities) are never cached: their answers are theirs.

A backend that tells writes which change only prices or stock apart (``ranking_generation``)
keys entries on that instead: a shop streaming price and stock updates keeps its rankings
cached, and a hit shows each product's record as it is now. An entry whose ranking read prices
or stock (a filter, or a price the query asked for) also holds the records' state it was
computed at (:meth:`ResultCache.records`) and is used only while that state is the one adopted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from ranker.base import SearchOptions, SearchRequest, SearchResult
from ranker.lazy import LRU


def request_key(pipeline: str, req: SearchRequest, opts: SearchOptions) -> Hashable | None:
    """The request's part of a key, or None when it is personal (never cached) or unhashable."""
    if opts.user_id or opts.user_affinity:
        return None
    weights = tuple(sorted(opts.weights.items())) if opts.weights else ()
    key = (pipeline, req, float(opts.diversity), weights, bool(opts.explain))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def reads_offers(req: SearchRequest, result: SearchResult) -> bool:
    """Whether the ranking of ``result`` read products' prices or stock: a filter on them, or a
    price preference (the request's or query understanding's)."""
    constraints = [*req.constraints, *getattr(result.interpretation, "constraints", ())]
    return not req.filters.empty or any(c.kind == "price" for c in constraints)


@dataclass(frozen=True)
class Cached:
    result: SearchResult
    records: Hashable = None  # the records' state it was computed at, when its ranking read them


class _Adopted:
    """A state adopted at most every ``refresh_s`` seconds."""

    def __init__(self, refresh_s: float, clock: Callable[[], float]):
        self.refresh_s = refresh_s
        self.clock = clock
        self._state: Hashable = None
        self._since = float("-inf")

    def __call__(self, now: Hashable) -> Hashable:
        if now != self._state:
            t = self.clock()
            if t - self._since >= self.refresh_s:
                self._state, self._since = now, t
        return self._state


class ResultCache(LRU[Hashable, Cached]):
    """A bounded, thread-safe LRU of cached answers by key (``size`` 0: off), with the shop's
    state it keys on (:meth:`state`) and the products' records' state (:meth:`records`)."""

    def __init__(self, size: int, refresh_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        super().__init__(size)
        if refresh_s < 0:
            raise ValueError("refresh_s must be >= 0")
        self.refresh_s = refresh_s
        self._ranking = _Adopted(refresh_s, self._now)
        self._records = _Adopted(refresh_s, self._now)
        self.clock = clock

    def _now(self) -> float:
        return self.clock()

    def state(self, now: Hashable) -> Hashable:
        """The state to key entries on, given the shop's state ``now``: ``now`` when it has not
        moved or the state in use is ``refresh_s`` old, else the state in use (its answers are
        at most ``refresh_s`` behind)."""
        return self._ranking(now)

    def records(self, now: Hashable) -> Hashable:
        """The same for the products' records (every write moves it)."""
        return self._records(now)
