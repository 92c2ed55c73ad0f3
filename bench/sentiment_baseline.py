"""TF-IDF + logistic-regression review-sentiment baseline table (English Blitzer, Chinese shopping).

Run from the repository root: ``python -m bench.sentiment_baseline``; writes
``bench/results/sentiment/baseline.md`` and ``.json`` with the machine named.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.provenance import SHARED_DATA as DEFAULT_DATA
from indexer.errors import BadInputError
from ranker.evaluation.relevance import machine_description
from training.sentiment_baseline import SEED, markdown_table, run_table

REPO = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sentiment_baseline", description=__doc__)
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"shared data folder ({DEFAULT_DATA})"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--tune-c", type=float, nargs="*", default=(), help="C grid for 3-fold CV on train")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sentiment")
    parser.add_argument("-v", "--verbose", action="store_true", help="log split shares and timings")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        rows = run_table(args.data, args.seed, args.tune_c)
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    date = datetime.now(UTC).isoformat(timespec="seconds")
    text = "\n".join(
        [
            "# Review sentiment: TF-IDF + logistic regression baseline",
            "",
            f"- date: {date}; machine: {machine_description()}",
            "",
            markdown_table(rows),
            "",
            *[f"- {r['set']}: {r['note']}" for r in rows],
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baseline.md").write_text(text + "\n")
    (args.out / "baseline.json").write_text(
        json.dumps({"date": date, "rows": rows}, indent=2, default=str) + "\n"
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
