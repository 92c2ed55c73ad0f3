"""Search results of the requests asked last, so a storefront's head queries are answered once
per state of the shop rather than once per shopper.

An entry's key holds the request and everything its answer depends on besides it: the index's
generation (every product write moves it), the event epoch (every event the model folds in moves
it) and the vocabulary's generation (every rebuild moves it). After a write, an event or a
rebuild no older entry can match, so a cached answer is always the one the pipeline would give
now; old entries age out of the bounded LRU. Requests that carry a shopper (``user_id`` or
affinities) are never cached: their answers are theirs.
"""

from __future__ import annotations

from collections.abc import Hashable

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


class ResultCache(LRU[Hashable, SearchResult]):
    """A bounded, thread-safe LRU of :class:`SearchResult` by key (``size`` 0: off)."""
