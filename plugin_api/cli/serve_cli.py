"""``shoprank serve`` (the HTTP service) and ``shoprank events ingest|expire`` (UBI logs)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from indexer.errors import BadInputError
from plugin_api.cli.common_cli import common, rows_status, settings_from
from plugin_api.cli.train_cli import ensure_query_runtime

# CLI flag → setting, passed to worker processes through the environment (the settings' edge).
SERVE_FLAGS: Mapping[str, str] = MappingProxyType(
    {
        "host": "host",
        "port": "port",
        "reranker": "reranker_path",
        "fusion_file": "fusion_path",
        "sentiment_model": "sentiment_path",
        "reranker_runtime": "reranker_runtime",
    }
)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    base = settings_from(args)
    overrides = {
        field: getattr(args, flag) for flag, field in SERVE_FLAGS.items() if getattr(args, flag) is not None
    }
    s = base.model_copy(update=overrides)
    print(
        f"shoprank: serving {s.backend} backend on http://{s.host}:{s.port}/ (storefront at /)",
        file=sys.stderr,
    )
    if args.workers < 1:
        raise BadInputError(f"--workers must be at least 1, got {args.workers}")
    ensure_query_runtime(s)  # before the workers start, so each finds the export
    from plugin_api.http.limits import uvicorn_options

    transport = uvicorn_options(s)  # head/keep-alive deadline, head size cap
    # No access-log line per request, with one worker or several (--verbose turns it on).
    transport["log_level"] = "info" if args.verbose else "warning"
    if args.workers > 1:
        env = {**base.model_dump(exclude_defaults=True), **overrides}
        for key, value in env.items():
            os.environ[f"SHOPRANK_{key.upper()}"] = (
                json.dumps(value) if isinstance(value, list | tuple) else str(value)
            )
        from plugin_api.http.workers import check_port_free, serve_workers

        try:
            check_port_free(s.host, s.port)
        except OSError as exc:
            raise BadInputError(
                f"cannot listen on {s.host}:{s.port} ({exc}); choose another --port"
            ) from None
        return serve_workers(s.host, s.port, args.workers, transport)
    from plugin_api.http.app import create_app

    uvicorn.run(create_app(s), host=s.host, port=s.port, **transport)
    return 0


def cmd_events_ingest(args: argparse.Namespace) -> int:
    from indexer.events import read_ubi_log, resolve_products
    from plugin_api.backends import factory
    from ranker.base import EanLookup

    s = settings_from(args)
    log = read_ubi_log(args.file)
    for err in log.errors[:20]:
        print(f"skipped {err}", file=sys.stderr)
    events, queries = log.events, log.queries
    if args.shift_to_now and events:
        delta = time.time() - max(e.timestamp for e in events)
        events = [replace(e, timestamp=e.timestamp + delta) for e in events]
        queries = [replace(q, timestamp=q.timestamp + delta) for q in queries]
    backend = factory(s.backend).search(s)
    eans = sorted({e.object_id for e in events if e.object_id})
    by_ean = backend.ids_for_eans(eans) if isinstance(backend, EanLookup) else {}
    known = set(backend.fetch(eans)) if eans else set()
    events = resolve_products(events, by_ean, known)
    store = factory(s.backend).events(s)
    accepted = duplicates = resolved = 0
    for start in range(0, max(len(events), len(queries)), 5000):
        rep = store.add(events[start : start + 5000], queries[start : start + 5000])
        accepted, duplicates, resolved = (
            accepted + rep.accepted,
            duplicates + rep.duplicates,
            resolved + rep.resolved,
        )
    print(
        json.dumps(
            {
                "events": accepted,
                "duplicates": duplicates,
                "naming_catalog_products": resolved,
                "queries": len(queries),
                "bad_lines": len(log.errors),
            }
        )
    )
    return rows_status(len(log.errors))


def cmd_events_expire(args: argparse.Namespace) -> int:
    from plugin_api.backends import factory

    s = settings_from(args)
    from indexer.events import MAX_CLOCK_SKEW_S

    days = args.days if args.days is not None else s.event_ttl_days
    now = time.time()
    # Records dated beyond the clock skew (stored before events were bounded) go too.
    gone = factory(s.backend).events(s).expire(now - days * 86400.0, after=now + MAX_CLOCK_SKEW_S)
    print(json.dumps({"expired": gone, "older_than_days": days}))
    return 0


def add_serve_commands(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the search & recommendation API and the storefront page")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--reranker", type=Path, help="cross-encoder folder from `shoprank train reranker`")
    p.add_argument(
        "--reranker-runtime", choices=["torch", "onnx", "onnx-int8"], help="how to run the cross-encoder"
    )
    p.add_argument("--fusion-file", type=Path, help="fusion.json from `shoprank train fusion`")
    p.add_argument(
        "--sentiment-model", type=Path, help="folder from `shoprank train sentiment` (POST /v1/reviews)"
    )
    common(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("events", help="shopper events (OpenSearch UBI format)")
    esub = p.add_subparsers(dest="action", required=True)
    p = esub.add_parser(
        "ingest", help="store a UBI log (bulk NDJSON, <index>\\t<json> lines, JSONL; .zip ok)"
    )
    p.add_argument("file", type=Path)
    p.add_argument(
        "--shift-to-now",
        action="store_true",
        help="move all timestamps so the newest event is now (replaying an old or synthetic log)",
    )
    common(p)
    p.set_defaults(func=cmd_events_ingest)
    p = esub.add_parser("expire", help="delete events older than the retention time")
    p.add_argument("--days", type=float, help="retention in days (default SHOPRANK_EVENT_TTL_DAYS, 365)")
    common(p)
    p.set_defaults(func=cmd_events_expire)
