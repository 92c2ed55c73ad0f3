"""TF-IDF + logistic-regression review-sentiment baseline table (English Blitzer, Chinese shopping).

Run from the repository root: ``python -m bench.sentiment_baseline``; merges its rows (one per
data set, each with its run's date, command, commit and machine) into
``bench/results/sentiment/baseline.json`` and renders ``baseline.md`` from it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from bench.common import Run, RunNotes, add_data, add_out, parser, write_results
from bench.report import table
from indexer.errors import BadInputError
from training.sentiment_baseline import SEED, run_table

HEADER = ["data", "split", "train", "test", "C", "accuracy", "macro-F1", "majority acc.", "fit+predict s"]


def render(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    rows = [
        [
            r["set"],
            r["split"],
            int(r["n_train"]),
            int(r["n_test"]),
            f"{r['C']:g}",
            f"{r['accuracy']:.4f}",
            f"{r['macro_f1']:.4f}",
            f"{r['majority_accuracy']:.4f}",
            f"{r['seconds']:.1f}",
            notes.mark(r),
        ]
        for r in doc["rows"]
    ]
    lines = [
        "# Review sentiment: TF-IDF + logistic regression baseline",
        "",
        *table([*HEADER, "run"], rows),
        *[f"- {r['set']}: {r['note']}" for r in doc["rows"]],
        "",
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser("sentiment_baseline", __doc__)
    add_data(ap)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--tune-c", type=float, nargs="*", default=(), help="C grid for 3-fold CV on train")
    add_out(ap, "sentiment")
    ap.add_argument("-v", "--verbose", action="store_true", help="log split shares and timings")
    args = ap.parse_args(argv)
    run = Run.start("sentiment_baseline", argv, args)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        rows = run_table(args.data, args.seed, args.tune_c)
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc = write_results(
        args.out, "baseline", rows, key=["set"], run=run, extra={"date": run.date}, markdown=render
    )
    print(render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
