"""Shopper events for the embedded backend: fsync'ed JSONL logs beside the index versions.

``<index root>/ubi_events.jsonl`` and ``ubi_queries.jsonl`` (the UBI index names) live outside the
versioned product snapshots, so rebuilding the catalog keeps every event. An event already stored
(same content hash) is skipped. Erasing a shopper or expiring old events rewrites the logs into a
temporary file that replaces the old one atomically, so a crash leaves either the old or the new
log, never a mix.

Several processes share the logs (``shoprank serve --workers N``, ``shoprank events ingest``
beside a running service): each one appends under one cross-process lock
(:class:`~indexer.durable_log.SharedLog`) and follows what the others appended or rewrote;
:meth:`EmbeddedEventStore.pull` hands the service the events other processes stored since it
last asked, and the shoppers they erased (``ubi_erasures.jsonl``: the erasure's time and a
SHA-256 of the shopper id, never the id itself), so every worker's event model sees every event
and forgets every erased shopper within a second.

Stored data never stops a start: a record that is not an event, or one dated beyond the clock
skew (written before events were bounded), is moved to ``ubi_events.quarantine.jsonl`` (appended,
fsync'ed, then the log is rewritten without it) and reported in one log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from indexer.durable_log import FileLock, SharedLog, append_records, read_records
from indexer.events import MAX_CLOCK_SKEW_S, Event, EventWriteReport, Pulled, QueryRecord, client_hash

log = logging.getLogger(__name__)

EVENTS_FILE = "ubi_events.jsonl"
QUERIES_FILE = "ubi_queries.jsonl"
ERASURES_FILE = "ubi_erasures.jsonl"
QUARANTINE_FILE = "ubi_events.quarantine.jsonl"
LOCK_FILE = ".ubi.lock"
RECENT_QUERIES = 50_000  # query records kept in memory to verify the events that follow them


def _query_record(d: dict[str, Any]) -> QueryRecord:
    ids = d.get("query_response_object_ids")
    return QueryRecord(
        str(d.get("query_id")),
        str(d.get("client_id")),
        "",
        0.0,
        tuple(str(i) for i in ids) if isinstance(ids, list) else (),
    )


class EmbeddedEventStore:
    name = "embedded"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.events_path = self.root / EVENTS_FILE
        self.queries_path = self.root / QUERIES_FILE
        self.erasures_path = self.root / ERASURES_FILE
        self.quarantine_path = self.root / QUARANTINE_FILE
        self._flock = FileLock(self.root / LOCK_FILE)  # orders the processes; one for the three logs
        self._events_log = SharedLog(self.events_path, self._flock)
        self._queries_log = SharedLog(self.queries_path, self._flock)
        self._erasures_log = SharedLog(self.erasures_path, self._flock)
        self._lock = threading.Lock()  # orders this process's threads
        self._events: list[Event] = []
        self._ids: set[str] = set()
        self._loaded = False
        self._query_ids: set[str] = set()
        self._recent: OrderedDict[str, QueryRecord] = OrderedDict()
        self._pulled = Pulled()  # stored by other processes, not handed out yet
        self._erased_until = 0.0  # the newest erasure this process has seen

    @contextmanager
    def _following(self, *, write: bool = False) -> Iterator[None]:
        """Both locks, with the event log (and the erasures) read up to date: exclusively to
        write, and for the first read (which may quarantine records)."""
        with self._lock:
            exclusive = write or not self._loaded
            with self._flock(exclusive=exclusive):
                self._sync_erasures()  # first: ``_loaded`` says whether this is the first read
                self._sync_events(exclusive=exclusive)
                yield

    # -- following the logs (callers hold both locks) -------------------------------------------
    def _sync_events(self, *, exclusive: bool) -> None:
        whole, records = self._events_log.read_new("event record", objects_only=False)
        events: list[Event] = [] if whole else self._events
        ids: set[str] = set() if whole else self._ids
        bad: list[tuple[int, Any, str]] = []
        ceiling = time.time() + MAX_CLOCK_SKEW_S
        for n, d in records:
            try:
                if not isinstance(d, dict):
                    raise ValueError(f"not a JSON object but {type(d).__name__}")
                e = Event.from_stored(d)
                if e.timestamp > ceiling:
                    raise ValueError(f"dated {e.timestamp - time.time():.0f} s in the future")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                bad.append((n, d, str(exc) or type(exc).__name__))
                continue
            if e.id in ids:
                continue
            ids.add(e.id)
            events.append(e)
            if self._loaded and (not whole or e.id not in self._ids):
                self._pulled.events.append(e)  # stored by another process
        if whole:
            self._events, self._ids = events, ids
        self._loaded = True
        if bad and whole and exclusive:
            self._quarantine(bad)
        elif bad:
            log.warning(
                "%s: skipping %d unusable event record(s) (first: %s); the next start quarantines them",
                self.events_path,
                len(bad),
                bad[0][2],
            )

    def _quarantine(self, bad: list[tuple[int, Any, str]]) -> None:
        """Move unusable records out of the log (kept for inspection, never fatal)."""
        append_records(
            self.quarantine_path,
            ({"line": n, "reason": why, "record": d, "quarantined_at": time.time()} for n, d, why in bad),
        )
        lines = {n for n, _, _ in bad}
        keep = [d for n, d in read_records(self.events_path, objects_only=False) if n not in lines]
        self._events_log.replace(keep, adopt=True)  # what this process holds: the records kept
        log.warning(
            "%s: moved %d unusable event record(s) to %s (first: line %d, %s)",
            self.events_path,
            len(bad),
            self.quarantine_path,
            bad[0][0],
            bad[0][2],
        )

    def _sync_queries(self) -> None:
        whole, records = self._queries_log.read_new("query record")
        if whole:  # every stored query id is known (a query id is stored once), recent ones kept
            self._query_ids, self._recent = set(), OrderedDict()
        tail: list[QueryRecord] = []
        for _, d in records:
            q = _query_record(d)
            self._query_ids.add(q.query_id)
            tail.append(q)
            if len(tail) > 2 * RECENT_QUERIES:
                tail = tail[-RECENT_QUERIES:]
        self._remember(tail[-RECENT_QUERIES:])

    def _sync_erasures(self) -> None:
        whole, records = self._erasures_log.read_new("erasure record")
        since = self._erased_until if whole else float("-inf")  # a replaced log: only later ones
        for _, d in records:
            at, who = d.get("at"), d.get("client_sha256")
            if not isinstance(at, int | float) or not isinstance(who, str):
                continue
            if self._loaded and at > since:  # erasures before the first read are in the logs
                self._pulled.erased.add(who)
            self._erased_until = max(self._erased_until, float(at))

    def _remember(self, queries: Sequence[QueryRecord]) -> None:
        for q in queries:
            self._recent[q.query_id] = q
            self._recent.move_to_end(q.query_id)
        while len(self._recent) > RECENT_QUERIES:
            self._recent.popitem(last=False)

    # -- EventStore -----------------------------------------------------------------------------
    def queries(self, ids: Sequence[str]) -> dict[str, QueryRecord]:
        with self._lock, self._flock(exclusive=False):
            self._sync_queries()
            return {i: self._recent[i] for i in ids if i in self._recent}

    def add(self, events: Sequence[Event], queries: Sequence[QueryRecord] = ()) -> EventWriteReport:
        """Store the events not stored yet (fsync'ed before it returns) and the query records
        not stored yet (a search's record: written through to the OS, so every worker reads it
        at once and a crash of this process loses none, not fsync'ed one by one: one per search
        would cost every search a disk flush)."""
        t0 = time.perf_counter()
        new: dict[str, Event] = {}
        fresh: dict[str, QueryRecord] = {}
        if events:
            with self._following(write=True):
                for e in events:
                    if e.id not in self._ids and e.id not in new:
                        new[e.id] = e
                if new:
                    self._events_log.append(e.to_dict() for e in new.values())
                    self._events.extend(new.values())
                    self._ids.update(new)
                if queries:
                    fresh = self._add_queries(queries)
        elif queries:
            with self._lock, self._flock(exclusive=True):
                fresh = self._add_queries(queries)
        return EventWriteReport(
            accepted=len(new),
            duplicates=len(events) - len(new),
            resolved=sum(e.product_id is not None for e in new.values()),
            queries=len(fresh),
            seconds=time.perf_counter() - t0,
            stored=list(new.values()),
        )

    def _add_queries(self, queries: Sequence[QueryRecord]) -> dict[str, QueryRecord]:
        self._sync_queries()
        fresh = {q.query_id: q for q in queries if q.query_id not in self._query_ids}
        if fresh:  # a query id is stored once (as OpenSearch's _id does)
            self._queries_log.append((q.to_dict() for q in fresh.values()), sync=False)
            self._query_ids.update(fresh)
            self._remember(list(fresh.values()))
        return fresh

    def events(self, *, since: float | None = None) -> list[Event]:
        with self._following():
            return [e for e in self._events if since is None or e.timestamp >= since]

    def pull(self) -> Pulled:
        """The events other processes stored, and the shoppers they erased, since the last pull
        (or since this store first read the logs); cheap when nothing changed (a few ``stat``)."""
        with self._following():
            out, self._pulled = self._pulled, Pulled()
            return out

    def erase_client(self, client_id: str) -> int:
        """Remove the shopper's events and queries, and tell the other processes to forget them."""
        return self._rewrite(lambda d: d.get("client_id") == client_id, erasing=client_id)

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

    def _rewrite(self, drop: Callable[[dict[str, Any]], bool], *, erasing: str | None = None) -> int:
        gone = 0
        # the first read quarantines unusable records, so a rewrite never drops them unseen
        with self._following(write=True):
            self._sync_queries()
            for shared in (self._events_log, self._queries_log):
                keep, n_drop = [], 0
                for _, d in read_records(shared.path):
                    if drop(d):
                        n_drop += 1
                    else:
                        keep.append(d)
                if n_drop:
                    shared.replace(keep)  # read whole again, here below and by every other process
                    gone += n_drop
            if erasing is not None:
                at = max(time.time(), self._erased_until + 1e-3)
                self._erasures_log.append([{"at": at, "client_sha256": client_hash(erasing)}])
                self._erased_until = at
            if gone:
                self._sync_events(exclusive=True)
                self._sync_queries()
        return gone
