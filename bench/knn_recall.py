"""Section 5: how much of the exact cosine top-k the OpenSearch lucene HNSW graph finds."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ranker.base import Filters
from ranker.retrieval.retriever import Retriever

EF_SEARCH = (None, 256, 512)  # None: ef_search = k (the plugin's behaviour without method_parameters)
DEPTH = 100


def measure_knn_recall(
    os_retriever: Retriever,
    exact_ids: Sequence[str],
    exact_vectors: np.ndarray,
    queries: Sequence[str],
    hw: str,
) -> dict:
    from ranker.retrieval.opensearch import OpenSearchBackend

    base = os_retriever.backend
    qv = os_retriever.embedder.encode(list(queries))
    ids = np.asarray(exact_ids)
    exact = [set(ids[np.argsort(-(exact_vectors @ q), kind="stable")[:DEPTH]]) for q in qv]
    rows = []
    for ef in EF_SEARCH:
        backend = OpenSearchBackend(base.client, alias=base.alias, ef_search=ef or 1)  # ef_search=max(ef, k)
        recalls, lat = [], []
        for q, truth in zip(qv, exact, strict=True):
            t = time.perf_counter()
            got = backend.knn(q, DEPTH, Filters())
            lat.append((time.perf_counter() - t) * 1000)
            recalls.append(len(truth & {s.id for s in got}) / DEPTH)
        rows.append(
            {
                "ef_search": ef or f"k ({DEPTH})",
                f"recall@{DEPTH}_vs_exact": round(float(np.mean(recalls)), 4),
                "min_recall": round(float(np.min(recalls)), 4),
                "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p95_ms": round(float(np.percentile(lat, 95)), 2),
                "queries": len(queries),
                "measured_on": hw,
            }
        )
    return {"depth": DEPTH, "rows": rows}
