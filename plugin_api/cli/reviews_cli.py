"""``shoprank reviews ingest``: score reviews' sentiment, store them, update the products."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from plugin_api.cli.common_cli import common as _common
from plugin_api.cli.common_cli import rows_status
from plugin_api.cli.common_cli import settings_from as _settings


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


def add_review_commands(sub: Any) -> None:
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
