"""``shoprank index|upsert|delete``: the catalog into the index, and single products in or out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from plugin_api.cli.common_cli import common as _common
from plugin_api.cli.common_cli import read_catalog_args as _read
from plugin_api.cli.common_cli import rows_status
from plugin_api.cli.common_cli import settings_from as _settings


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
    from plugin_api.cli.train_cli import ensure_query_runtime

    ensure_query_runtime(s)  # what `serve` will embed queries with
    print(json.dumps(out))
    return rows_status(len(read.errors), len(rep.write.errors))


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


def add_catalog_commands(sub: Any) -> None:
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
