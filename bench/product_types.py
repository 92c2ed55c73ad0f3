"""Product types: how many products get one, and how well the classifier types held-out products.

Needs the embedded index (``shoprank index --catalog ../shared/data/chorus_icecat``). Reads every
product's (title, category) as the backend lists them, fits :class:`ranker.query.types.TypeModel`
(category → title slot → known phrase in the title → classifier), and reports the coverage of each
source. Then, per seed, trains the classifier on all but ``--share`` of the products typed by
their own text and predicts the held-out ones from their titles alone
(:func:`ranker.query.types.holdout`; an abstention counts as wrong), overall and on the products
carrying Icecat's ``attr_t_product_type``. Merges one row per measurement into
``OUT/product_types.json`` and renders ``OUT/product_types.md``.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Run, RunNotes, add_index, add_out, parser, rows_of, write_results


def _markdown(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    lines = [
        "# Product types",
        "",
        "`bench/product_types.py`: types learned from the catalog's titles and categories; the "
        "classifier (TF-IDF words + linear SVM) checked on held-out products typed by their own text.",
        "",
        "| measure | products | value | detail | run |",
        "|---|---|---|---|---|",
    ]
    for r in rows_of(doc):
        lines.append(
            f"| {r['measure']} | {r['products']} | {r['value']:.4f} | {r.get('detail', '')} | {notes.mark(r)} |"
        )
    return "\n".join([*lines, "", *notes.lines(), ""])


def main(argv: list[str] | None = None) -> int:
    ap = parser("product_types", __doc__)
    add_index(ap)
    add_out(ap, "product_types")
    ap.add_argument("--share", type=float, default=0.2, help="held-out share (default 0.2)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated split seeds")
    args = ap.parse_args(argv)
    this_run = Run.start("product_types", argv, args)

    from indexer.embedded.store import EmbeddedStore
    from ranker.query.types import TypeModel, holdout, typed_by_text
    from ranker.retrieval.embedded import EmbeddedBackend

    docs = [d[2] for d in EmbeddedBackend(EmbeddedStore(args.index)).naming_documents()]
    t = time.perf_counter()
    model = TypeModel.fit(docs)
    fit_s = time.perf_counter() - t
    _, typed = typed_by_text(docs)
    by_text = sum(1 for ts in typed if ts)
    labelled = sum(1 for _, c in docs if c.strip() and not c.strip().isdigit())
    anything = sum(1 for d in docs if model.known.get(d))
    n = len(docs)
    rows: list[dict[str, Any]] = [
        {"measure": "carry a category (attr_t_product_type)", "products": n, "value": labelled / n},
        {
            "measure": "typed by their own text (category, title slot, phrase)",
            "products": n,
            "value": by_text / n,
        },
        {
            "measure": "typed at all (text or classifier)",
            "products": n,
            "value": anything / n,
            "detail": f"{len(model)} types; fit {fit_s:.1f} s",
        },
    ]
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        h = holdout(docs, share=args.share, seed=seed)
        detail = f"seed {seed}, {h.types} types, coverage {h.coverage:.3f}"
        rows.append(
            {
                "measure": f"held-out accuracy (seed {seed})",
                "products": h.products,
                "value": h.accuracy,
                "detail": detail,
            }
        )
        rows.append(
            {
                "measure": f"held-out accuracy, Icecat-typed products (seed {seed})",
                "products": h.labelled,
                "value": h.labelled_accuracy,
                "detail": detail,
            }
        )
        print(rows[-2], rows[-1], flush=True)
    for r in rows:
        r["value"] = round(float(r["value"]), 4)
    write_results(args.out, "product_types", rows, key=("measure",), run=this_run, markdown=_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
