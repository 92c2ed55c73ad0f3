"""Reranking benchmark: cross-validated quality per pipeline and rerank latency per depth.

Reads a reranker trained with ``shoprank train reranker --folds K`` (its manifest holds the
held-out metrics of ``hybrid`` and ``rerank``; every dev query was scored by a fold model that never
saw it) and, when given, a fusion model from ``shoprank train fusion`` (its held-out ``full``
metrics). Then measures the cross-encoder's latency on the real catalog for 50 and 100 candidates
(hybrid top-N of each dev query, products fetched) for each runtime (torch, ONNX fp32, ONNX int8),
on this machine's CPU or GPU.
Writes ``OUT/reranking.json`` and ``OUT/reranking.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.report import table
from indexer.embedding.embedders import resolve_device
from indexer.manifest import ModelManifest
from plugin_api.backends import open_retriever
from plugin_api.settings import Settings
from ranker.base import SearchRequest
from ranker.evaluation.relevance import load_judgments, machine_description
from ranker.rerank.registry import open_reranker

REPO = Path(__file__).resolve().parents[1]
METRICS = ["ndcg@10", "ndcg_condensed@10", "judged@10", "mrr@10", "recall@100"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reranker", type=Path, required=True)
    ap.add_argument("--fusion-file", type=Path)
    ap.add_argument(
        "--judgments", type=Path, default=REPO.parent / "shared/data/chorus_icecat/judgments_dev.csv"
    )
    ap.add_argument("--depths", default="50,100")
    ap.add_argument(
        "--runtimes",
        default="torch,onnx,onnx-int8",
        help="reranker runtimes to time (onnx needs `shoprank export`)",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "reranking")
    args = ap.parse_args(argv)
    manifest = ModelManifest.load(args.reranker, kind="cross-encoder")
    quality = dict(manifest.metrics.get("cross_validated", {}))
    if args.fusion_file:
        fusion_meta = json.loads(args.fusion_file.read_text()).get("meta", {})
        quality.update(fusion_meta.get("cross_validated", {}))
    s = Settings(device=args.device)
    retriever = open_retriever(s)
    queries = sorted(load_judgments(args.judgments))
    depths = [int(d) for d in args.depths.split(",")]
    candidates = {
        d: {
            q: [h.product for h in retriever.search(SearchRequest(q, k=d)).hits if h.product] for q in queries
        }
        for d in depths
    }
    latency = []
    for runtime in args.runtimes.split(","):
        reranker = open_reranker(args.reranker, runtime=runtime, device=s.device)
        reranker.score("warm up", candidates[depths[0]][queries[0]][:8])  # loads the model
        for depth in depths:
            ms = []
            for q in queries:
                t = time.perf_counter()
                reranker.score(q, candidates[depth][q])
                ms.append((time.perf_counter() - t) * 1000)
            latency.append(
                {
                    "runtime": runtime,
                    "candidates": depth,
                    "p50_ms": float(np.percentile(ms, 50)),
                    "p95_ms": float(np.percentile(ms, 95)),
                    "queries": len(queries),
                    "device": resolve_device(s.device),
                }
            )
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "reranker": {
            "name": manifest.name,
            "data_sources": manifest.data_sources,
            "train": manifest.train_config,
            "folds": len(manifest.folds),
        },
        "quality_cross_validated": quality,
        "latency": latency,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reranking.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    lines = [
        "# Reranking benchmark",
        "",
        f"- date: {result['date']}; machine: {result['machine']}",
        f"- reranker {manifest.name}: sources {manifest.data_sources}; trained {manifest.train_config.get('steps')} "
        f"steps in {manifest.train_config.get('seconds')} s on {manifest.train_config.get('device_used')}",
        f"- quality: query-level {len(manifest.folds)}-fold cross-validation on the dev judgments (held-out runs)",
        "",
        *table(
            ["pipeline", *METRICS],
            [[p, *(m.get(k, float("nan")) for k in METRICS)] for p, m in quality.items()],
            4,
        ),
        *table(
            ["runtime", "candidates", "p50 ms", "p95 ms", "queries", "device"],
            [
                [r["runtime"], r["candidates"], r["p50_ms"], r["p95_ms"], r["queries"], r["device"]]
                for r in latency
            ],
        ),
    ]
    (args.out / "reranking.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
