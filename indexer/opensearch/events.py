"""Shopper events on OpenSearch, in the UBI layout: ``<prefix>_events`` and ``<prefix>_queries``.

Events are created with their content hash as ``_id`` (``op_type=create``), so an event sent twice
is a 409 the store counts as a duplicate. A bulk write returns once the node has the events in its
translog (durable, ``index.translog.durability: request``), without waiting for a refresh, so
posting events and recording searches add no refresh wait; reads and deletes refresh first, so
they see every accepted event. The storefront's original
UBI record is kept under ``raw`` (stored, not indexed). Erasing a shopper and expiring old events
delete the matching documents of both indices by id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from indexer.errors import BackendUnavailableError
from indexer.events import Event, EventWriteReport, QueryRecord
from indexer.opensearch.client import client_url, ensure_index, os_errors
from indexer.opensearch.mapping import AUTO_REPLICAS

log = logging.getLogger(__name__)


def _keyword() -> dict[str, Any]:
    return {"type": "keyword"}


def _timestamp() -> dict[str, Any]:
    return {"type": "date", "format": "epoch_millis"}


def events_body() -> dict[str, Any]:
    """The events index body (fresh each call: request bodies share no dict)."""
    return {
        "settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": AUTO_REPLICAS}},
        "mappings": {
            "dynamic": False,
            "properties": {
                "event_id": _keyword(),
                "action_name": _keyword(),
                "client_id": _keyword(),
                "query_id": _keyword(),
                "session_id": _keyword(),
                "object_id": _keyword(),
                "object_id_field": _keyword(),
                "product_id": _keyword(),
                "position": {"type": "integer"},
                "user_query": {"type": "keyword", "ignore_above": 1024},
                "timestamp": _timestamp(),
                "raw": {"type": "object", "enabled": False},
            },
        },
    }


def queries_body() -> dict[str, Any]:
    """The queries index body (fresh each call)."""
    return {
        "settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": AUTO_REPLICAS}},
        "mappings": {
            "dynamic": False,
            "properties": {
                "query_id": _keyword(),
                "client_id": _keyword(),
                "user_query": {"type": "keyword", "ignore_above": 1024},
                "query_response_object_ids": _keyword(),
                "timestamp": _timestamp(),
            },
        },
    }


PAGE = 1000


def _doc(e: Event) -> dict[str, Any]:
    d = e.to_dict()
    d["timestamp"] = int(round(e.timestamp * 1000))
    return d


class OpenSearchEventStore:
    name = "opensearch"

    def __init__(self, client: Any, *, prefix: str = "ubi"):
        self.client = client
        self.events_index = f"{prefix}_events"
        self.queries_index = f"{prefix}_queries"
        self.url = client_url(client)

    def ensure_indices(self) -> None:
        for index, body in ((self.events_index, events_body()), (self.queries_index, queries_body())):
            ensure_index(self.client, index, body, self.url)

    def add(self, events: Sequence[Event], queries: Sequence[QueryRecord] = ()) -> EventWriteReport:
        from opensearchpy.helpers import streaming_bulk

        t0 = time.perf_counter()
        self.ensure_indices()
        unique = {e.id: e for e in events}
        report = EventWriteReport(duplicates=len(events) - len(unique), queries=len(queries))
        actions: list[dict[str, Any]] = [
            {"_op_type": "create", "_index": self.events_index, "_id": i, "_source": _doc(e)}
            for i, e in unique.items()
        ]
        actions += [
            {
                "_op_type": "index",
                "_index": self.queries_index,
                "_id": q.query_id,
                "_source": {**q.to_dict(), "timestamp": int(round(q.timestamp * 1000))},
            }
            for q in queries
        ]
        if not actions:
            return report
        with os_errors(self.url, "writing shopper events"):
            for ok, result in streaming_bulk(
                self.client, actions, raise_on_error=False, raise_on_exception=False
            ):
                item = next(iter(result.values()))
                if item.get("_index") == self.queries_index:
                    if not ok:
                        raise BackendUnavailableError(
                            f"OpenSearch refused a query record: {item.get('error')}"
                        )
                    continue
                if ok:
                    report.stored.append(unique[str(item["_id"])])
                elif item.get("status") == 409:
                    report.duplicates += 1
                else:
                    raise BackendUnavailableError(
                        f"OpenSearch refused event {item.get('_id')}: {item.get('error')}; nothing after it was confirmed"
                    )
        report.accepted = len(report.stored)
        report.resolved = sum(e.product_id is not None for e in report.stored)
        report.seconds = time.perf_counter() - t0
        return report

    def events(self, *, since: float | None = None) -> list[Event]:
        with os_errors(self.url, f"reading {self.events_index!r}"):
            if not self.client.indices.exists(index=self.events_index):
                return []
            self.client.indices.refresh(index=self.events_index)
        query: dict[str, Any] = {"match_all": {}}
        if since is not None:
            query = {"range": {"timestamp": {"gte": int(since * 1000)}}}
        out: list[Event] = []
        skipped, first = 0, ""
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": PAGE,
                "query": query,
                "sort": [{"timestamp": "asc"}, {"event_id": "asc"}],
            }
            if after is not None:
                body["search_after"] = after
            with os_errors(self.url, f"reading {self.events_index!r}"):
                hits = self.client.search(index=self.events_index, body=body)["hits"]["hits"]
            for h in hits:
                src = dict(h["_source"])
                try:
                    src["timestamp"] = float(src["timestamp"]) / 1000.0
                    out.append(Event.from_stored(src))
                except (KeyError, TypeError, ValueError) as exc:  # never fatal: counted, reported once
                    skipped += 1
                    first = first or f"{h.get('_id')}: {exc}"
            if len(hits) < PAGE:
                if skipped:
                    log.warning(
                        "%s: skipped %d unusable event record(s) (first: %s)",
                        self.events_index,
                        skipped,
                        first,
                    )
                return out
            after = hits[-1]["sort"]

    def _delete(self, query: dict[str, Any], action: str) -> int:
        """Delete the matching documents of both indices: ids by ``search_after`` pages, then bulk
        deletes (``_delete_by_query`` lives in the reindex module, which a minimal node lacks)."""
        from opensearchpy.helpers import bulk

        gone = 0
        for index, key in ((self.events_index, "event_id"), (self.queries_index, "query_id")):
            with os_errors(self.url, action):
                if not self.client.indices.exists(index=index):
                    continue
                self.client.indices.refresh(index=index)
                ids: list[str] = []
                after: list[Any] | None = None
                while True:
                    body: dict[str, Any] = {
                        "size": PAGE,
                        "_source": False,
                        "query": query,
                        "sort": [{key: "asc"}],
                    }
                    if after is not None:
                        body["search_after"] = after
                    hits = self.client.search(index=index, body=body)["hits"]["hits"]
                    ids += [str(h["_id"]) for h in hits]
                    if len(hits) < PAGE:
                        break
                    after = hits[-1]["sort"]
                if not ids:
                    continue
                done, errors = bulk(
                    self.client,
                    ({"_op_type": "delete", "_index": index, "_id": i} for i in ids),
                    raise_on_error=False,
                    refresh=True,
                )
            failed = [e for e in errors if next(iter(e.values())).get("status") != 404]  # type: ignore[union-attr]
            if failed:
                raise BackendUnavailableError(
                    f"OpenSearch did not delete {len(failed)} record(s) of {index!r}; retry"
                )
            gone += int(done)
        return gone

    def erase_client(self, client_id: str) -> int:
        return self._delete({"term": {"client_id": client_id}}, "erasing a shopper's events")

    def expire(self, before: float, *, after: float | None = None) -> int:
        query: dict[str, Any] = {"range": {"timestamp": {"lt": int(before * 1000)}}}
        if after is not None:
            query = {
                "bool": {
                    "should": [query, {"range": {"timestamp": {"gt": int(after * 1000)}}}],
                    "minimum_should_match": 1,
                }
            }
        return self._delete(query, "expiring old events")

    def queries(self, ids: Sequence[str]) -> dict[str, QueryRecord]:
        """Query records by id (a realtime get: no refresh needed right after a search)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        with os_errors(self.url, f"reading {self.queries_index!r}"):
            if not self.client.indices.exists(index=self.queries_index):
                return {}
            docs = self.client.mget(index=self.queries_index, body={"ids": wanted})["docs"]
        out = {}
        for d in docs:
            src = d.get("_source") if d.get("found") else None
            if not src:
                continue
            ids_shown = src.get("query_response_object_ids") or []
            out[str(d["_id"])] = QueryRecord(
                str(d["_id"]),
                str(src.get("client_id")),
                str(src.get("user_query") or ""),
                float(src.get("timestamp") or 0.0) / 1000.0,
                tuple(str(i) for i in ids_shown) if isinstance(ids_shown, list) else (),
            )
        return out
