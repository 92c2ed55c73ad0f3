"""The OpenSearch update log: ``<alias>-updates`` keeps, per product id, the last write made
through the API (``POST/PUT/DELETE /v1/products``, ``shoprank upsert/delete``), so a rebuild can
replay what its catalog does not know (the rules are ``indexer.carry``'s).

How no acknowledged write is lost across an alias swap:

* a write goes to this log first (durable when it returns; whoever reads the log refreshes it
  first, so every write that returned is seen), then to the live index through the alias, and
  is acknowledged after both;
* a build indexes its catalog, replays the whole log into the new index (nobody else writes
  there yet) and notes every log document's ``(_seq_no, _primary_term)``; then it moves the
  alias; then it refreshes the log and replays the documents whose mark changed since: the
  writes that reached the old index meanwhile. A write whose log entry that last look did not
  see returned from the log after the swap, so its second step went through the alias to the
  new index.
* that last replay races live writers that already write to the new index, so it never
  overwrites blindly: it reads the new index's document (with its ``_seq_no``), then the log
  entry, and writes only if the document is still the one it read (``if_seq_no``; ``create`` for
  a missing one). A conflict means someone wrote meanwhile: it looks again (a few times).

A write that fails halfway (503) may be in the log and not in the index: the caller was told it
may be partly applied and resends it; a rebuild replays it either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from indexer.carry import Write
from indexer.manifest import Manifest
from indexer.opensearch.client import ensure_index, os_errors
from indexer.opensearch.mapping import replica_settings
from indexer.product import Product

log = logging.getLogger(__name__)

Mark = tuple[int, int]  # (_seq_no, _primary_term) of a log document: changes with every write
CHUNK = 500


def updates_body(replicas: int | None) -> dict[str, Any]:
    return {
        "settings": {"index": {"number_of_shards": 1, **replica_settings(replicas)}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "op": {"type": "keyword"},
                "at": {"type": "double"},
                "model": {"type": "keyword"},
                "dim": {"type": "integer"},
                "doc": {"type": "object", "enabled": False},  # kept, never indexed
            },
        },
    }


def upsert_entry(p: Product, vector: np.ndarray, manifest: Manifest) -> dict[str, Any]:
    return {
        "op": "upsert",
        "at": time.time(),
        "model": manifest.model_id,
        "dim": manifest.dimension,
        "doc": {"product": p.to_dict(), "vector": [float(x) for x in vector]},
    }


def delete_entry() -> dict[str, Any]:
    return {"op": "delete", "at": time.time(), "doc": {}}


def write_of(pid: str, src: dict[str, Any]) -> Write:
    if src["op"] == "delete":
        return Write(pid)
    doc = src["doc"]
    vector = np.asarray(doc["vector"], dtype=np.float32)
    return Write(pid, Product.from_dict(doc["product"]), vector, (str(src["model"]), int(src["dim"])))


class UpdateLog:
    def __init__(self, client: Any, alias: str, url: str, *, replicas: int | None = None):
        self.client = client
        self.index = f"{alias}-updates"
        self.url = url
        self.replicas = replicas
        self._ready = False

    def ensure(self) -> None:
        if not self._ready:
            ensure_index(self.client, self.index, updates_body(self.replicas), self.url)
            self._ready = True

    def exists(self) -> bool:
        with os_errors(self.url, f"looking for {self.index!r}"):
            return bool(self.client.indices.exists(index=self.index))

    def record(self, entries: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Make each id's new last write durable; raises (nothing acknowledged) when any of them
        did not go in."""
        from opensearchpy.helpers import bulk

        self.ensure()
        actions = ({"_id": pid, "_source": src} for pid, src in entries)
        with os_errors(self.url, f"recording product writes in {self.index!r}"):
            bulk(self.client, actions, index=self.index, chunk_size=CHUNK, max_retries=2)

    def marks(self) -> dict[str, Mark]:
        """Every logged id → its document's mark (after a refresh: every returned write is seen)."""
        from opensearchpy.helpers import scan

        if not self.exists():
            return {}
        with os_errors(self.url, f"reading {self.index!r}"):
            self.client.indices.refresh(index=self.index)
            hits: Iterator[dict[str, Any]] = scan(
                self.client,
                index=self.index,
                query={"query": {"match_all": {}}, "_source": False, "seq_no_primary_term": True},
                size=1000,
            )
            return {str(h["_id"]): (int(h["_seq_no"]), int(h["_primary_term"])) for h in hits}

    def fetch(self, ids: Sequence[str]) -> dict[str, Write]:
        """The last write of each id (real time: what the log holds now); unreadable ones skipped."""
        out: dict[str, Write] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = list(ids[start : start + CHUNK])
            with os_errors(self.url, f"reading {self.index!r}"):
                resp = self.client.mget(index=self.index, body={"ids": chunk})
            for d in resp.get("docs") or []:
                if not d.get("found"):
                    continue
                try:
                    out[str(d["_id"])] = write_of(str(d["_id"]), d["_source"])
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("%s: skipping the unreadable entry %r (%r)", self.index, d.get("_id"), exc)
        return out

    def drop(self) -> list[str]:
        if not self.exists():
            return []
        with os_errors(self.url, f"dropping {self.index!r}"):
            self.client.indices.delete(index=self.index)
        self._ready = False
        return [self.index]
