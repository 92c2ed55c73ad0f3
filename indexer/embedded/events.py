"""Shopper events for the embedded backend: fsync'ed JSONL logs beside the index versions.

``<index root>/ubi_events.jsonl`` and ``ubi_queries.jsonl`` (the UBI index names) live outside the
versioned product snapshots, so rebuilding the catalog keeps every event. An event already stored
(same content hash) is skipped. Erasing a shopper or expiring old events rewrites the logs into a
temporary file that replaces the old one atomically, so a crash leaves either the old or the new
log, never a mix.

Stored data never stops a start: a record that is not an event, or one dated beyond the clock
skew (written before events were bounded), is moved to ``ubi_events.quarantine.jsonl`` (appended,
fsync'ed, then the log is rewritten without it) and reported in one log line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from indexer.durable_log import append_records, fsync_dir, read_records
from indexer.events import MAX_CLOCK_SKEW_S, Event, EventWriteReport, QueryRecord

log = logging.getLogger(__name__)

EVENTS_FILE = "ubi_events.jsonl"
QUERIES_FILE = "ubi_queries.jsonl"
QUARANTINE_FILE = "ubi_events.quarantine.jsonl"
RECENT_QUERIES = 50_000  # query records kept in memory to verify the events that follow them


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
        self._recent: OrderedDict[str, QueryRecord] = OrderedDict()
        self.quarantine_path = self.root / QUARANTINE_FILE

    def _load(self) -> list[Event]:
        if self._events is None:
            events: list[Event] = []
            ids: set[str] = set()
            bad: list[tuple[int, Any, str]] = []
            ceiling = time.time() + MAX_CLOCK_SKEW_S
            for n, d in read_records(self.events_path, "event record", objects_only=False):
                try:
                    if not isinstance(d, dict):
                        raise ValueError(f"not a JSON object but {type(d).__name__}")
                    e = Event.from_stored(d)
                    if e.timestamp > ceiling:
                        raise ValueError(f"dated {e.timestamp - time.time():.0f} s in the future")
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    bad.append((n, d, str(exc) or type(exc).__name__))
                    continue
                if e.id not in ids:
                    ids.add(e.id)
                    events.append(e)
            if bad:
                self._quarantine(bad)
            self._events, self._ids = events, ids
        return self._events

    def _quarantine(self, bad: list[tuple[int, Any, str]]) -> None:
        """Move unusable records out of the log (kept for inspection, never fatal)."""
        append_records(
            self.quarantine_path,
            ({"line": n, "reason": why, "record": d, "quarantined_at": time.time()} for n, d, why in bad),
        )
        lines = {n for n, _, _ in bad}
        keep = [d for n, d in read_records(self.events_path, objects_only=False) if n not in lines]
        self._replace(self.events_path, keep)
        log.warning(
            "%s: moved %d unusable event record(s) to %s (first: line %d, %s)",
            self.events_path,
            len(bad),
            self.quarantine_path,
            bad[0][0],
            bad[0][2],
        )

    @staticmethod
    def _replace(path: Path, records: list[dict[str, Any]]) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        append_records(tmp, records)  # fsync'ed before it replaces the log
        tmp.touch()
        os.replace(tmp, path)
        fsync_dir(path.parent)

    def _remember(self, queries: Sequence[QueryRecord]) -> None:
        for q in queries:
            self._recent[q.query_id] = q
            self._recent.move_to_end(q.query_id)
        while len(self._recent) > RECENT_QUERIES:
            self._recent.popitem(last=False)

    def _load_queries(self) -> set[str]:
        if self._query_ids is None:
            self._query_ids = set()
            self._recent.clear()
            tail: list[QueryRecord] = []
            for _, d in read_records(self.queries_path):
                qid = str(d.get("query_id"))
                self._query_ids.add(qid)
                ids = d.get("query_response_object_ids")
                tail.append(
                    QueryRecord(
                        qid,
                        str(d.get("client_id")),
                        "",
                        0.0,
                        tuple(str(i) for i in ids) if isinstance(ids, list) else (),
                    )
                )
                if len(tail) > 2 * RECENT_QUERIES:
                    tail = tail[-RECENT_QUERIES:]
            self._remember(tail[-RECENT_QUERIES:])
        return self._query_ids

    def queries(self, ids: Sequence[str]) -> dict[str, QueryRecord]:
        with self._lock:
            self._load_queries()
            return {i: self._recent[i] for i in ids if i in self._recent}

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
            known = self._load_queries()
            fresh = {q.query_id: q for q in queries if q.query_id not in known}
            if fresh:  # a query id is stored once (as OpenSearch's _id does)
                append_records(self.queries_path, (q.to_dict() for q in fresh.values()))
                known.update(fresh)
                self._remember(list(fresh.values()))
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

    def expire(self, before: float, *, after: float | None = None) -> int:
        """Drop events and queries older than ``before`` (epoch seconds), or dated later than
        ``after``; returns how many went."""
        top = float("inf") if after is None else after

        def drop(d: dict[str, Any]) -> bool:
            try:
                t = float(d.get("timestamp") or 0.0)
            except (TypeError, ValueError):
                return True
            return not before <= t <= top  # NaN compares false: dropped too

        return self._rewrite(drop)

    def _rewrite(self, drop: Callable[[dict[str, Any]], bool]) -> int:
        gone = 0
        with self._lock:
            self._load()  # quarantines unusable records first, so a rewrite never drops them unseen
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
                    self._replace(path, keep)
                    gone += n_drop
            self._events = None  # reload on next use
            self._query_ids = None
        return gone
