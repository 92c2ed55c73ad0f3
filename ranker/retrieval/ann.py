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

Building it is the dearest part of a start-up (200k rows: 69 s on this CPU, a million: several
minutes), so the graph of a loaded version is saved beside it (:meth:`HnswIndex.cached`) with a
manifest — the vectors' digest, the parameters, hnswlib's version, the graph file's own digest —
checked when the next start-up loads it; anything that differs is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.durable_log import FileLock, fsync_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnParams:
    """When and how the base segment gets a graph: from ``min_rows`` rows on (below, exact search
    is fast enough: 20k rows ≈ 2 ms), with HNSW's ``m``, ``ef_construction`` and search ``ef``.

    The search ``ef`` grows with the graph (:meth:`ef_for`): the same ef finds less of the exact
    top 100 in a larger graph. Measured on the synthetic catalogs (100 dev query vectors, one
    thread, AMD EPYC ×2, 2026-12-03): 200k rows, ef 256: recall@100 0.986; 1M rows, ef 256 / 512 /
    768 / 1024: 0.926 / 0.971 / 0.987 / 0.996 at p95 2.7 / 3.1 / 4.3 / 4.9 ms."""

    min_rows: int = 100_000
    m: int = 32
    ef_construction: int = 200
    ef: int = 256  # at up to ``ef_rows`` rows; proportionally more above, up to ``ef_max``
    ef_rows: int = 250_000
    ef_max: int = 1024
    threads: int = 2  # for the build only; each query runs in its request's thread

    def ef_for(self, rows: int) -> int:
        """The search ef of a graph of ``rows`` rows (never above ``ef_max``, never below ``ef``)."""
        return max(self.ef, min(self.ef_max, -(-self.ef * rows // max(self.ef_rows, 1))))


DEFAULT_ANN = AnnParams()


def _digest(buf: memoryview | bytes) -> str:
    return hashlib.blake2b(buf, digest_size=16).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


class HnswIndex:
    """An HNSW graph over the rows of ``vectors`` (unit-normalized: inner product = cosine)."""

    def __init__(self, vectors: np.ndarray, params: AnnParams, *, graph: Any | None = None):
        import hnswlib

        n, dim = vectors.shape
        self.params = params
        self.size = n
        if graph is not None:  # loaded by :meth:`cached`
            self._index = graph
        else:
            self._index = hnswlib.Index(space="ip", dim=dim)
            self._index.init_index(max_elements=max(n, 1), ef_construction=params.ef_construction, M=params.m)
            if n:
                self._index.add_items(vectors, np.arange(n), num_threads=params.threads)
        self._index.set_num_threads(1)
        self.ef = params.ef_for(n)
        self._index.set_ef(self.ef)

    @classmethod
    def cached(cls, vectors: np.ndarray, params: AnnParams, folder: Path) -> HnswIndex:
        """The graph of ``vectors`` saved in ``folder`` when its manifest fits them (same vectors
        in the same order, same parameters and hnswlib), else built and saved there (replacing
        any other graph). Processes starting together build it once: the others wait and load."""
        import hnswlib

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        want = {
            "kind": "hnsw",
            "rows": n,
            "dimension": dim,
            "m": params.m,
            "ef_construction": params.ef_construction,
            "hnswlib": getattr(hnswlib, "__version__", "unknown"),
            "vectors": _digest(vectors.data.cast("B")),
        }
        graph, meta = folder / "hnsw.bin", folder / "hnsw.json"
        with FileLock(folder / ".hnsw.lock")(exclusive=True):
            try:
                saved = json.loads(meta.read_text())
            except (OSError, ValueError):
                saved = None
            if isinstance(saved, dict) and saved.get("graph") and {k: saved.get(k) for k in want} == want:
                try:
                    if _file_digest(graph) == saved["graph"]:
                        index = hnswlib.Index(space="ip", dim=dim)
                        index.load_index(str(graph), max_elements=max(n, 1))
                        log.info("ann: loaded the HNSW graph of %d rows from %s", n, graph)
                        return cls(vectors, params, graph=index)
                except (OSError, RuntimeError):
                    pass
                log.warning("ann: the HNSW graph in %s does not match its manifest; rebuilding it", folder)
            built = cls(vectors, params)
            try:
                cls._save(built, want, folder)
            except OSError as exc:  # a read-only index folder: served, not saved
                log.warning(
                    "ann: could not save the HNSW graph in %s (%s); the next start builds it again",
                    folder,
                    exc,
                )
                return built
            log.info("ann: built and saved the HNSW graph of %d rows in %s", n, graph)
            return built

    @staticmethod
    def _save(built: HnswIndex, want: dict[str, object], folder: Path) -> None:
        graph, meta = folder / "hnsw.bin", folder / "hnsw.json"
        meta.unlink(missing_ok=True)  # a graph without its manifest is never loaded
        tmp = folder / "hnsw.bin.tmp"
        built._index.save_index(str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, graph)
        meta_tmp = folder / "hnsw.json.tmp"
        meta_tmp.write_text(json.dumps({**want, "graph": _file_digest(graph)}))
        os.replace(meta_tmp, meta)
        fsync_dir(folder)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows nearest to ``vector`` (at most ``ef`` and all rows): (rows, inner
        products). Safe from many threads at once (the graph is never changed)."""
        k = min(k, self.size, self.ef)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        labels, dist = self._index.knn_query(np.asarray(vector, dtype=np.float32)[None], k=k)
        return labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)
