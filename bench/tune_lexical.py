"""Grid over the lexical settings (field boosts × synonym weight) on the dev judgments.

This is how the defaults in ``indexer/schema.py`` were chosen. It needs a built embedded index of
the full catalog (``shoprank index --catalog ../shared/data/chorus_icecat``) and writes
``OUT/tune_lexical.json`` + ``.md``. Caveat, printed in the report too: the grid is chosen on the
same 100 dev queries it is scored on (there is no held-out set), so treat small gaps as noise.
"""

from __future__ import annotations

import sys

from bench.common import Run, add_index, add_judgments, add_out, parser
from bench.grid import write_grid
from indexer.embedded.store import EmbeddedStore
from indexer.schema import DEFAULT_FIELD_BOOSTS, DEFAULT_SYNONYM_WEIGHT
from ranker.base import Filters
from ranker.evaluation.relevance import compute_metrics, load_judgments
from ranker.retrieval.embedded import EmbeddedBackend

BOOSTS = {
    "per-field sum: title3 name2 brand2 cat2 desc1 attr.5": dict(
        title=3, name=2, brand=2, category=2, description=1, attributes_text=0.5
    ),
    "per-field sum: title1 brand1 desc1": dict(title=1, brand=1, description=1),
    "per-field sum: title3 name1 brand1 cat1 desc.5 attr.2": dict(
        title=3, name=1, brand=1, category=1, description=0.5, attributes_text=0.2
    ),
    "all_text": dict(all_text=1),
    "all_text + title.5": dict(all_text=1, title=0.5),
    "all_text + title.3 + attr.1": dict(all_text=1, title=0.3, attributes_text=0.1),
}
SYNONYM_WEIGHTS = (0.0, 0.3, 1.0)

TITLE = "Lexical tuning grid (embedded BM25, dev judgments)"
COLUMNS = ["boosts", "synonym_weight"]


def main(argv: list[str] | None = None) -> int:
    ap = parser("tune_lexical", __doc__)
    add_index(ap)
    add_judgments(ap)
    add_out(ap, "tune_lexical")
    args = ap.parse_args(argv)
    this_run = Run.start("tune_lexical", argv, args)
    qrels = load_judgments(args.judgments)
    store = EmbeddedStore(args.index)
    rows = []
    for name, boosts in BOOSTS.items():
        for w in SYNONYM_WEIGHTS:
            backend = EmbeddedBackend(store, field_boosts=boosts, synonym_weight=w)
            run = {
                q: {s.id: float(100 - i) for i, s in enumerate(backend.lexical(q, 100, Filters()))}
                for q in qrels
            }
            m = compute_metrics(run, qrels)
            default = boosts == dict(DEFAULT_FIELD_BOOSTS) and w == DEFAULT_SYNONYM_WEIGHT
            rows.append(
                {
                    "boosts": name,
                    "synonym_weight": w,
                    "default": default,
                    **{k: round(v, 4) for k, v in m.items()},
                }
            )
            print(f"{name:40s} w={w:<4} " + " ".join(f"{k}={v:.4f}" for k, v in m.items()), flush=True)
    write_grid(
        args.out,
        "tune_lexical",
        TITLE,
        len(store.load().products),
        COLUMNS,
        rows,
        this_run,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
