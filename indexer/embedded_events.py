"""Shopper events for the embedded backend: fsync'ed JSONL logs beside the index versions.

``<index root>/ubi_events.jsonl`` and ``ubi_queries.jsonl`` (the UBI index names) live outside the
versioned product snapshots, so rebuilding the catalog keeps every event. An event already stored
(same content hash) is skipped. Erasing a shopper or expiring old events rewrites the logs into a
temporary file that replaces the old one atomically, so a crash leaves either the old or the new
log, never a mix.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from indexer.durable_log import append_records, fsync_dir, read_records
from indexer.events import Event, EventWriteReport, QueryRecord

log = logging.getLogger(__name__)

EVENTS_FILE = "ubi_events.jsonl"
QUERIES_FILE = "ubi_queries.jsonl"


class EmbeddedEventStore:
    name = "embedded"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.events_path = self.root / EVENTS_FILE
        self.queries_path = self.root / QUERIES_FILE
        self._lock = threading.Lock()
        self._events: list[Event] | None = None
        self._ids: set[str] = set()
        self._query_ids: set[str] | None = None

    def _load(self) -> list[Event]:
        if self._events is None:
            events: list[Event] = []
            ids: set[str] = set()
            for n, d in read_records(self.events_path, "event record"):
                try:
                    e = Event.from_stored(d)
                except (KeyError, TypeError, ValueError):
                    log.warning("%s:%d: ignoring an incomplete event record", self.events_path, n)
                    continue
                if e.id not in ids:
                    ids.add(e.id)
                    events.append(e)
            self._events, self._ids = events, ids
        return self._events

    def add(self, events: Sequence[Event], queries: Sequence[QueryRecord] = ()) -> EventWriteReport:
        t0 = time.perf_counter()
        with self._lock:
            stored = self._load()
            new: dict[str, Event] = {}
            for e in events:
                if e.id not in self._ids and e.id not in new:
                    new[e.id] = e
            self.root.mkdir(parents=True, exist_ok=True)
            if new:
                append_records(self.events_path, (e.to_dict() for e in new.values()))
                stored.extend(new.values())
                self._ids.update(new)
            if self._query_ids is None:
                self._query_ids = {str(d.get("query_id")) for _, d in read_records(self.queries_path)}
            fresh = {q.query_id: q for q in queries if q.query_id not in self._query_ids}
            if fresh:  # a query id is stored once (as OpenSearch's _id does)
                append_records(self.queries_path, (q.to_dict() for q in fresh.values()))
                self._query_ids.update(fresh)
        return EventWriteReport(
            accepted=len(new),
            duplicates=len(events) - len(new),
            resolved=sum(e.product_id is not None for e in new.values()),
            queries=len(fresh),
            seconds=time.perf_counter() - t0,
            stored=list(new.values()),
        )

    def events(self, *, since: float | None = None) -> list[Event]:
        with self._lock:
            stored = self._load()
            return [e for e in stored if since is None or e.timestamp >= since]

    def erase_client(self, client_id: str) -> int:
        return self._rewrite(lambda d: d.get("client_id") == client_id)

    def expire(self, before: float) -> int:
        """Drop events and queries older than ``before`` (epoch seconds); returns how many went."""
        return self._rewrite(lambda d: float(d.get("timestamp") or 0.0) < before)

    def _rewrite(self, drop: Callable[[dict[str, Any]], bool]) -> int:
        gone = 0
        with self._lock:
            for path in (self.events_path, self.queries_path):
                if not path.exists():
                    continue
                keep, n_drop = [], 0
                for _, d in read_records(path):
                    if drop(d):
                        n_drop += 1
                    else:
                        keep.append(d)
                if n_drop:
                    tmp = path.with_suffix(".tmp")
                    tmp.unlink(missing_ok=True)
                    append_records(tmp, keep)  # fsync'ed before it replaces the log
                    tmp.touch()
                    os.replace(tmp, path)
                    fsync_dir(path.parent)
                    gone += n_drop
            self._events = None  # reload on next use
            self._query_ids = None
        return gone
