"""``shoprank search|eval``: one query through a retrieval mode, or named pipelines over judgments."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plugin_api.cli.catalog_cli import cmd_index
from plugin_api.cli.common_cli import common as _common
from plugin_api.cli.common_cli import settings_from as _settings
from plugin_api.settings import Settings


def cmd_search(args: argparse.Namespace) -> int:
    from plugin_api.backends import open_retriever
    from ranker.base import Filters, SearchRequest
    from ranker.ranking.pipelines import PipelineParts, build_pipeline

    s = _settings(args)
    searcher = build_pipeline(args.mode, PipelineParts(open_retriever(s)))
    filters = Filters(
        brands=tuple(args.brand or ()),
        price_min=args.price_min,
        price_max=args.price_max,
        in_stock=args.in_stock,
    )
    res = searcher.search(SearchRequest(args.query, k=args.k, filters=filters))
    if args.json:
        print(
            json.dumps(
                {
                    "query": args.query,
                    "mode": res.mode.value,
                    "timings_ms": dict(res.timings_ms),
                    "hits": [
                        {
                            "id": h.id,
                            "rank": h.rank,
                            "score": h.score,
                            "sources": {k: {"score": v.score, "rank": v.rank} for k, v in h.sources.items()},
                            "title": h.product.title if h.product else None,
                            "brand": h.product.brand if h.product else None,
                            "price": h.product.price if h.product else None,
                        }
                        for h in res.hits
                    ],
                },
                ensure_ascii=False,
            )
        )
        return 0
    if not res.hits:
        print("no results")
    for h in res.hits:
        p = h.product
        src = "  ".join(
            f"{k}={v.score:.3f}" + (f"#{v.rank}" if v.rank else "")
            for k, v in h.sources.items()
            if v.score is not None
        )
        price = f"{p.price:.2f}" if p and p.price is not None else "-"
        print(
            f"{h.rank:>3}. [{h.id}] {p.title if p else '?'}  ({p.brand if p else ''}, {price})  score={h.score:.4f}  {src}"
        )
    return 0


def pipeline_parts(s: Settings, retriever: Any, args: argparse.Namespace, names: Sequence[str]) -> Any:
    """The service's parts, with ``--reranker`` and ``--fusion-file`` over the settings; the
    cross-encoder is opened only when a pipeline of ``names`` uses it."""
    from plugin_api.backends import pipeline_parts as parts_from

    update: dict[str, Any] = {"fusion_path": getattr(args, "fusion_file", None)}
    if getattr(args, "reranker", None) is not None:
        update["reranker_path"] = args.reranker
    return parts_from(
        s.model_copy(update=update), retriever, with_reranker=bool({"rerank", "full"} & set(names))
    )


def cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from plugin_api.backends import embedder_from, open_retriever
    from ranker.base import SearchRequest
    from ranker.evaluation.relevance import (
        RUN_DEPTH,
        evaluate_pipelines,
        load_judgments,
        machine_description,
        write_outputs,
    )
    from ranker.ranking.pipelines import build_pipeline, check_names

    s = _settings(args)
    qrels = load_judgments(args.judgments)
    embedder = embedder_from(s)
    if args.catalog and not args.no_index:
        rc = cmd_index(args, embedder)
        if rc:
            return rc
    retriever = open_retriever(s, embedder)
    names = check_names([n.strip() for n in args.pipelines.split(",") if n.strip()])
    parts = pipeline_parts(s, retriever, args, names)
    pipelines = {}
    for name in names:
        searcher = build_pipeline(name, parts)

        def run(q: str, searcher: Any = searcher) -> list[tuple[str, float]]:
            res = searcher.search(SearchRequest(q, k=RUN_DEPTH, with_products=False))
            return [(h.id, h.score) for h in res.hits]

        pipelines[name] = run
        # One warm-up query so model loading does not count as query latency.
        searcher.search(SearchRequest("warm up", k=1, with_products=False))
    backend = retriever.backend

    def lookup(ids: Any) -> Any:
        vecs, products = backend.vectors(ids), backend.fetch(ids)
        manifest = backend.manifest()
        dim = manifest.dimension if manifest is not None else 1
        emb = np.vstack([vecs.get(i, np.zeros(dim, dtype=np.float32)) for i in ids])
        return emb, [products[i].brand if i in products else "" for i in ids]

    results = evaluate_pipelines(qrels, pipelines, progress=not args.quiet, diversity=lookup)
    manifest = retriever.backend.manifest()
    mpath, rpath = write_outputs(
        args.out,
        results,
        qrels,
        {
            "judgments": str(args.judgments),
            "catalog": str(args.catalog),
            "backend": s.backend,
            "model_id": manifest.model_id if manifest else None,
            "documents": retriever.backend.count(),
            "fusion": s.fusion,
            "machine": machine_description(),
        },
    )
    print(rpath.read_text())
    print(f"wrote {mpath} and {rpath}", file=sys.stderr)
    return 0


def add_search_commands(sub: Any) -> None:
    from ranker.ranking.pipelines import PIPELINES

    p = sub.add_parser("search", help="search the index")
    p.add_argument("query", help="what the shopper typed")
    p.add_argument(
        "--mode", choices=["bm25", "vector", "hybrid"], default="hybrid", help="retrieval (default hybrid)"
    )
    p.add_argument("-k", type=int, default=10, help="results to return (1-1000)")
    p.add_argument("--brand", action="append", help="only this brand (repeatable)")
    p.add_argument("--price-min", type=float, help="lowest price, in currency units")
    p.add_argument("--price-max", type=float, help="highest price, in currency units")
    p.add_argument(
        "--in-stock",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only products in (or out of) stock; products without stock data pass",
    )
    p.add_argument(
        "--fusion",
        choices=["rrf", "minmax"],
        help="how hybrid merges its sources (default SHOPRANK_FUSION, rrf)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval", help="evaluate pipelines on a query,docid,rating judgments CSV")
    p.add_argument(
        "--catalog", type=Path, help="catalog to (re)index first; omit to evaluate the existing index"
    )
    p.add_argument("--no-index", action="store_true", help="do not re-index even when --catalog is given")
    p.add_argument("--limit", type=int, help="index only the first N products")
    p.add_argument("--judgments", required=True, type=Path, help="query,docid,rating CSV (graded 0-3)")
    p.add_argument(
        "--pipelines",
        default="bm25,vector,hybrid",
        help=f"comma-separated, from {','.join(PIPELINES)} (default bm25,vector,hybrid)",
    )
    p.add_argument("--reranker", type=Path, help="trained reranker folder (rerank and full pipelines)")
    p.add_argument(
        "--fusion-file", type=Path, help="fusion.json from `shoprank train fusion` (full pipeline)"
    )
    p.add_argument("--out", required=True, type=Path, help="folder for metrics.json and report.md")
    p.add_argument(
        "--reranker-runtime",
        choices=["torch", "onnx", "onnx-int8"],
        help="serve the reranker with torch (default) or its `shoprank export` ONNX files",
    )
    p.add_argument(
        "--fusion",
        choices=["rrf", "minmax"],
        help="how hybrid merges its sources (default SHOPRANK_FUSION, rrf)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _common(p)
    p.set_defaults(func=cmd_eval)
