"""Reranking benchmark: cross-validated quality per pipeline and rerank latency per depth.

Reads a reranker trained with ``shoprank train reranker --folds K`` (its manifest holds the
held-out metrics of ``hybrid`` and ``rerank``; every dev query was scored by a fold model that never
saw it) and, when given, a fusion model from ``shoprank train fusion`` (its held-out ``full``
metrics). Then measures the cross-encoder's latency on the real catalog for 50 and 100 candidates
(hybrid top-N of each dev query, products fetched) for each runtime (torch, ONNX fp32, ONNX int8),
on this machine's CPU or GPU.
Merges its rows (quality per pipeline, latency per runtime and depth, each with its run's
provenance) into ``OUT/reranking.json`` and renders ``OUT/reranking.md`` from it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Run, RunNotes, Table, add_device, add_judgments, add_out, parser, write_results
from bench.report import table
from indexer.embedding.embedders import resolve_device
from indexer.manifest import ModelManifest
from plugin_api.backends import open_retriever
from plugin_api.settings import Settings
from ranker.base import SearchRequest
from ranker.evaluation.relevance import load_judgments
from ranker.rerank.registry import open_reranker

METRICS = ["ndcg@10", "ndcg_condensed@10", "judged@10", "mrr@10", "recall@100"]
LATENCY = ["runtime", "candidates", "p50_ms", "p95_ms", "queries", "device"]


def render(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    quality = [
        [p, m.get("reranker", "–"), *(m.get(k, float("nan")) for k in METRICS), notes.mark(m)]
        for p, m in doc["quality_cross_validated"].items()
    ]
    latency = [[*(r[c] for c in LATENCY), notes.mark(r)] for r in doc["latency"]]
    r = doc.get("reranker", {})
    train = r.get("train", {})
    lines = [
        "# Reranking benchmark",
        "",
        f"- last reranker read: {r.get('name')}: sources {r.get('data_sources')}; trained {train.get('steps')} "
        f"steps in {train.get('seconds')} s on {train.get('device_used')}",
        f"- quality: query-level {r.get('folds')}-fold cross-validation on the dev judgments (held-out runs),"
        " as the reranker's (and fusion file's) manifest recorded it",
        "",
        *table(["pipeline", "reranker", *METRICS, "run"], quality, 4),
        *table(["runtime", "candidates", "p50 ms", "p95 ms", "queries", "device", "run"], latency),
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser("reranking", __doc__)
    ap.add_argument("--reranker", type=Path, required=True)
    ap.add_argument("--fusion-file", type=Path)
    add_judgments(ap)
    ap.add_argument("--depths", default="50,100")
    ap.add_argument(
        "--runtimes",
        default="torch,onnx,onnx-int8",
        help="reranker runtimes to time (onnx needs `shoprank export`)",
    )
    add_device(ap)
    add_out(ap, "reranking")
    args = ap.parse_args(argv)
    run = Run.start("reranking", argv, args)
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
    reranker_meta = {
        "name": manifest.name,
        "data_sources": manifest.data_sources,
        "train": manifest.train_config,
        "folds": len(manifest.folds),
    }
    quality_rows = [{"pipeline": p, **m, "reranker": manifest.name} for p, m in quality.items()]
    doc = write_results(
        args.out,
        "reranking",
        [
            Table(quality_rows, ("pipeline",), at="quality_cross_validated", keyed=True),
            Table(latency, ("runtime", "candidates"), at="latency"),
        ],
        run=run,
        extra={"date": run.date, "machine": run.machine, "reranker": reranker_meta},
        markdown=render,
    )
    print(render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
