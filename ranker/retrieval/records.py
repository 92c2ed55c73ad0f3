"""Products and vectors read from an OpenSearch node, kept per document version.

A search's candidates are fetched on every request (their records for features and the page,
their vectors for the scores a leg did not give); decoding ~140 large ``_source`` documents per
request cost more than the searches themselves. The node says each document's version
(``_primary_term``, ``_seq_no``) without its source, so a record read once is reused until
any process writes that product: a version-checked cache is never stale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.product import Product
from ranker.lazy import LRU

Version = tuple[int, int]  # (_primary_term, _seq_no)


@dataclass(frozen=True)
class Record:
    version: Version
    product: Product
    vector: np.ndarray | None


def version_of(doc: dict) -> Version | None:
    """A found document's version, or None when the node did not say."""
    term, seq = doc.get("_primary_term"), doc.get("_seq_no")
    if isinstance(term, int) and isinstance(seq, int):
        return (term, seq)
    return None


class RecordCache:
    """A bounded LRU of :class:`Record` by product id, answered only for the version asked."""

    def __init__(self, size: int):
        self._lru: LRU[str, Record] = LRU(size)

    @property
    def size(self) -> int:
        return self._lru.size

    def get(self, pid: str, version: Version) -> Record | None:
        got = self._lru.get(pid)
        return got if got is not None and got.version == version else None

    def put(self, pid: str, record: Record) -> None:
        self._lru.put(pid, record)
