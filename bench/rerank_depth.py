"""What the cross-encoder's depth and size buy and cost in ``full``: quality and time per query.

For each reranker (``--reranker DIR``, repeatable; served by ``--runtime``, default onnx-int8) and
each depth M (``--depths``, default 20,30,50,100: the first pass's top M that the cross-encoder
reads, ``SHOPRANK_RERANK_TOP``), every dev query goes through the served ``full`` pipeline (query
understanding on, the default fusion for a cross-encoder, no result or score cache) on the embedded
index; plus one row of ``full`` without a cross-encoder. Reports nDCG@10 and friends on the dev
judgments, the cross-encoder's own time per query (p50/p95) and the whole query's, one client.

Read the quality of a reranker trained on these judgments (``judged`` in its data sources) as
in-sample: the rows say so. A model trained without them (``--sources pseudo,hard_negatives``)
meets the dev queries for the first time, so its rows compare depths and sizes fairly. Merges
one row per (reranker, depth) into ``OUT/rerank_depth.json`` and renders ``.md`` from it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Run, RunNotes, add_judgments, add_out, parser, rows_of, write_results
from bench.report import table
from ranker.evaluation.relevance import evaluate_pipelines, load_judgments

METRICS = ["ndcg@10", "ndcg_condensed@10", "judged@10", "mrr@10"]
KEY = ("reranker", "runtime", "depth")
NONE = "none (full without a cross-encoder)"


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2) if xs else 0.0


def describe(folder: Path) -> dict[str, Any]:
    """Name, layers, training sources and whether it saw the dev judgments, from its files."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    config = json.loads((folder / "model" / "config.json").read_text(encoding="utf-8"))
    sources = dict(manifest.get("data_sources") or {})
    return {
        "reranker": manifest["name"],
        "layers": int(config["num_hidden_layers"]),
        "max_length": manifest.get("max_length"),
        "sources": sources,
        "in_sample": bool(sources.get("judged")),
        "train_s": (manifest.get("train_config") or {}).get("seconds"),
    }


def _markdown(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    rows = sorted(rows_of(doc), key=lambda r: (r["reranker"] != NONE, r["reranker"], r["depth"]))
    body = [
        [
            r["reranker"],
            r.get("layers", "–"),
            "yes" if r.get("in_sample") else "no",
            r["depth"],
            *(r[m] for m in METRICS),
            r["ce_p50_ms"],
            r["ce_p95_ms"],
            r["p50_ms"],
            r["p95_ms"],
            notes.mark(r),
        ]
        for r in rows
    ]
    head = ["reranker", "layers", "saw the dev judgments", "M", *METRICS]
    head += ["CE p50 ms", "CE p95 ms", "query p50 ms", "query p95 ms", "run"]
    return "\n".join(
        [
            "# Cross-encoder depth and size in `full` (dev judgments, embedded, one client)",
            "",
            "- M: the first pass's top M the cross-encoder reads; CE ms: its own time per query; query ms: "
            "the whole `full` query (query understanding, retrieval, features, cross-encoder, fusion)",
            "- a reranker that saw the dev judgments in training is scored in-sample: compare its depths, "
            "not its quality with the others'",
            "",
            *table(head, body, digits=4),
            *notes.lines(),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = parser("rerank_depth", __doc__)
    add_judgments(ap)
    add_out(ap, "rerank_depth")
    ap.add_argument("--reranker", type=Path, action="append", required=True, help="a model folder")
    ap.add_argument("--runtime", default="onnx-int8", help="torch, onnx or onnx-int8 (default)")
    ap.add_argument("--depths", default="20,30,50,100")
    ap.add_argument("--threads", type=int, help="the cross-encoder session's threads (default: every core)")
    args = ap.parse_args(argv)
    this_run = Run.start("rerank_depth", argv, args)
    depths = [int(d) for d in args.depths.split(",") if d.strip()]

    from plugin_api.backends import open_retriever, pipeline_parts
    from plugin_api.settings import Settings
    from ranker.base import SearchRequest
    from ranker.ranking.pipelines import build_pipeline
    from ranker.rerank.registry import open_reranker

    qrels = load_judgments(args.judgments)
    s = Settings(backend="embedded", result_cache_size=0)
    parts = pipeline_parts(s, open_retriever(s), with_reranker=False)
    configs: list[tuple[dict[str, Any], Any]] = [({"reranker": NONE, "runtime": "–", "depth": 0}, parts)]
    for folder in args.reranker:
        about = describe(folder)
        reranker = open_reranker(folder, runtime=args.runtime, device="cpu", threads=args.threads)
        for m in depths:
            row = {**about, "runtime": args.runtime, "depth": m}
            configs.append((row, replace(parts, reranker=reranker, rerank_top=m)))
    rows = []
    for row, p in configs:
        searcher = build_pipeline("full", p)
        searcher.search(SearchRequest("warm up", k=10, with_products=False))
        ce_ms: list[float] = []
        query_ms: list[float] = []

        def search(
            q: str, searcher: Any = searcher, ce_ms: list[float] = ce_ms, query_ms: list[float] = query_ms
        ):
            res = searcher.search(SearchRequest(q, k=10, with_products=False))
            ce_ms.append(float(res.timings_ms.get("rerank", 0.0)))
            query_ms.append(float(res.timings_ms.get("total", 0.0)))
            return [(h.id, h.score) for h in res.hits]

        result = evaluate_pipelines(qrels, {"full": search})["full"]
        out = {
            **row,
            **{m: round(float(result.metrics[m]), 4) for m in METRICS},
            "queries": len(query_ms),
            "ce_p50_ms": _pct(ce_ms, 50),
            "ce_p95_ms": _pct(ce_ms, 95),
            "p50_ms": _pct(query_ms, 50),
            "p95_ms": _pct(query_ms, 95),
        }
        print(
            f"{out['reranker']} M={out['depth']}: ndcg@10 {out['ndcg@10']}, CE p50 {out['ce_p50_ms']} ms, "
            f"query p95 {out['p95_ms']} ms",
            flush=True,
        )
        rows.append(out)
    doc = write_results(args.out, "rerank_depth", rows, key=KEY, run=this_run, markdown=_markdown)
    print(_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
