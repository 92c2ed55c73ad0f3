"""Approximate nearest neighbours for the embedded backend's large base segments: hnswlib's HNSW.

Chosen by measurement (``bench/results/scale``; the scratch comparison is in the session note of
2026-12-02): on 200k synthetic products, 100 dev query vectors, top 100, one thread, AMD EPYC ×2,
hnswlib (M 32, ef_construction 200, ef 256) finds 0.986 of the exact top 100 in 1.3 ms against
34 ms exact; faiss-cpu's HNSW gave the same unfiltered recall for the speed, but its in-graph
filter found only 0.40–0.61 of a 10 %-selective filter's top 100, where hnswlib's found 0.96–0.99;
usearch was 2× slower to build and to search for the same recall.

The graph is built once per base segment (at load or merge, off the request path) over its rows,
labels = row numbers, and never changed: rows the delta replaced or deleted are masked by the
caller (as are filters), and new rows live in the delta, searched exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnnParams:
    """When and how the base segment gets a graph: from ``min_rows`` rows on (below, exact search
    is fast enough: 20k rows ≈ 2 ms), with HNSW's ``m``, ``ef_construction`` and search ``ef``."""

    min_rows: int = 100_000
    m: int = 32
    ef_construction: int = 200
    ef: int = 256
    threads: int = 2  # for the build only; each query runs in its request's thread


DEFAULT_ANN = AnnParams()


class HnswIndex:
    """An HNSW graph over the rows of ``vectors`` (unit-normalized: inner product = cosine)."""

    def __init__(self, vectors: np.ndarray, params: AnnParams):
        import hnswlib

        n, dim = vectors.shape
        self.params = params
        self.size = n
        self._index = hnswlib.Index(space="ip", dim=dim)
        self._index.init_index(max_elements=max(n, 1), ef_construction=params.ef_construction, M=params.m)
        if n:
            self._index.add_items(vectors, np.arange(n), num_threads=params.threads)
        self._index.set_num_threads(1)
        self._index.set_ef(params.ef)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows nearest to ``vector`` (at most ``ef`` and all rows): (rows, inner
        products). Safe from many threads at once (the graph is never changed)."""
        k = min(k, self.size, self.params.ef)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        labels, dist = self._index.knn_query(np.asarray(vector, dtype=np.float32)[None], k=k)
        return labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)
