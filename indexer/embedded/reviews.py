"""Reviews for the embedded backend: an append-only, fsync'ed JSONL log beside the index versions.

The log lives at ``<index root>/reviews.jsonl``, outside the versioned product snapshots, so
rebuilding the product index keeps every review. Records are reviews with their sentiment score;
a review already in the log (same content hash) is skipped, so re-ingesting a file is harmless.
Aggregates are recomputed from the log when it changes (reading it is linear and fast), by this
process or another (``serve --workers N``): appends and reads take a cross-process lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from indexer.base import DocError
from indexer.durable_log import FileLock, append_records, read_records
from indexer.reviews import Review, ReviewStats, ReviewWriteReport, aggregate

log = logging.getLogger(__name__)

FILE = "reviews.jsonl"
LOCK_FILE = ".reviews.lock"


class EmbeddedReviewStore:
    name = "embedded"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.path = self.root / FILE
        self._lock = threading.Lock()  # this process's threads
        self._flock = FileLock(self.root / LOCK_FILE)  # the processes sharing the log
        self._stamp: tuple[int, int] | None = None
        self._ids: set[str] = set()
        self._stats: dict[str, ReviewStats] = {}

    def generation(self) -> tuple[int, int] | None:
        """The review log's state (modified time, size; None: no reviews): it moves with every
        review stored, by this process or another."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._ids, self._stats = None, set(), {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        reviews: dict[str, Review] = {}
        for n, d in read_records(self.path, "review record"):
            try:
                r = Review(d["product_id"], d["text"], d.get("rating"), d.get("date"), d["sentiment"])
            except (KeyError, TypeError):
                log.warning("%s:%d: ignoring an incomplete review record", self.path, n)
                continue
            reviews.setdefault(r.id, r)
        self._ids = set(reviews)
        self._stats = aggregate(reviews.values())
        self._stamp = stamp

    def add(self, reviews: Sequence[Review]) -> ReviewWriteReport:
        """Append scored reviews not stored yet; returns what changed."""
        t0 = time.perf_counter()
        with self._lock, self._flock(exclusive=True):  # a review another worker just stored is seen
            self._refresh()
            new: dict[str, Review] = {}
            for r in reviews:
                if r.id not in self._ids and r.id not in new:
                    new[r.id] = r
            if new:
                self.root.mkdir(parents=True, exist_ok=True)
                append_records(self.path, (r.to_dict() for r in new.values()))
            self._stamp = None  # re-read on next use
        products = sorted({r.product_id for r in new.values()})
        return ReviewWriteReport(len(new), len(reviews) - len(new), products, time.perf_counter() - t0)

    def stats(self, ids: Sequence[str] | None = None) -> dict[str, ReviewStats]:
        """Aggregates of the given products (all reviewed products when ``ids`` is None)."""
        with self._lock:
            if self.generation() != self._stamp:
                with self._flock(exclusive=False):  # never half of another process's append
                    self._refresh()
            if ids is None:
                return dict(self._stats)
            return {i: self._stats[i] for i in ids if i in self._stats}

    def publish(self, ids: Sequence[str] | None = None) -> list[DocError]:
        """Nothing to do: the embedded backend reads aggregates from this log when it fetches."""
        return []
