"""What every ``shoprank`` subcommand shares: backend flags and settings from them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from plugin_api.settings import Settings


def fail(message: str) -> int:
    """The one error line a failed command prints, and its exit status (2)."""
    print(f"shoprank: error: {message}", file=sys.stderr)
    return 2


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    keys = ("backend", "opensearch_url", "data_dir", "embedder", "device", "index_alias", "fusion")
    for key in (*keys, "reranker_runtime"):
        v = getattr(args, key, None)
        if v is not None:
            overrides[key] = v
    return Settings(**overrides)


def common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend", choices=["embedded", "opensearch"], help="where the index lives (default: embedded)"
    )
    p.add_argument("--opensearch-url", help="OpenSearch URL (default http://127.0.0.1:9200)")
    p.add_argument("--index-alias", help="OpenSearch alias (default shoprank-products)")
    p.add_argument(
        "--data-dir", type=Path, help="embedded index folder parent (default ~/.local/share/shoprank)"
    )
    p.add_argument(
        "--embedder",
        help="embedding model: minilm (default, torch), minilm-onnx or minilm-onnx-int8 (onnxruntime, "
        "after `shoprank export --embedder`), hashing (tests only)",
    )
    p.add_argument("--device", help="auto (default: CUDA when present), cpu or cuda")


def read_catalog_args(args: argparse.Namespace) -> Any:
    from indexer.catalog import read_catalog

    read = read_catalog(args.catalog, limit=args.limit)
    for err in read.errors[:20]:
        print(f"skipped {err}", file=sys.stderr)
    if len(read.errors) > 20:
        print(f"... and {len(read.errors) - 20} more bad rows", file=sys.stderr)
    return read


def rows_status(bad_rows: int, failed: int = 0) -> int:
    """The exit status every bulk command shares: 0 when every row went in, 1 when some rows were
    reported (bad, or refused by the store) while the good ones went in; errors that store nothing
    exit 2 (``main``)."""
    return 1 if bad_rows or failed else 0
