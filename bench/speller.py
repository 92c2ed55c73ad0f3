"""Choosing the speller: symspellpy's symmetric-delete lookup against a rapidfuzz scan of the vocabulary.

Needs the embedded index (``shoprank index --catalog ../shared/data/chorus_icecat``). Takes
``--words`` naming terms of the catalog (letters only, 5+ letters, named by 3+ products; a fixed
seed), makes one typo of each kind in each (``ranker.evaluation.typed_variants.typo``), and
corrects every typo with

* ``symspellpy``: :class:`ranker.query.speller.Speller` (what shoprank ships: its rules, its
  tie-breaks), and
* ``rapidfuzz``: ``process.extract`` over the same naming terms with the OSA distance (adjacent
  transposition = one edit), the same edit budget, ties broken by how many products name the term.

Reports the share corrected back to the original word and the lookup latency per word. Merges
one row per method into ``OUT/speller.json`` and renders ``OUT/speller.md``.
"""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np

from bench.common import Run, RunNotes, add_index, add_out, parser, rows_of, write_results
from ranker.evaluation.typed_variants import TYPO_KINDS, typo


def _markdown(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    lines = [
        "# Speller: symspellpy vs a rapidfuzz scan",
        "",
        "One-edit typos of the catalog's naming terms, corrected back (`bench/speller.py`).",
        "",
        "| method | typos | corrected back | p50 µs | p95 µs | run |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows_of(doc):
        lines.append(
            f"| {r['method']} | {r['typos']} | {r['accuracy']:.3f} | {r['p50_us']:.0f} | {r['p95_us']:.0f} "
            f"| {notes.mark(r)} |"
        )
    return "\n".join([*lines, "", *notes.lines(), ""])


def main(argv: list[str] | None = None) -> int:
    ap = parser("speller", __doc__)
    add_index(ap)
    add_out(ap, "speller")
    ap.add_argument("--words", type=int, default=500, help="naming terms to mistype (default 500)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    this_run = Run.start("speller", argv, args)

    from rapidfuzz import process
    from rapidfuzz.distance import OSA

    from indexer.embedded.store import EmbeddedStore
    from ranker.query.lexicon import lexicon_of
    from ranker.query.speller import Speller, max_edits
    from ranker.retrieval.embedded import EmbeddedBackend

    lex = lexicon_of(EmbeddedBackend(EmbeddedStore(args.index)))
    assert lex is not None
    pool = [
        t for t, c in zip(lex.terms, lex.df.tolist(), strict=True) if t.isalpha() and len(t) >= 5 and c >= 3
    ]
    words = random.Random(args.seed).sample(pool, min(args.words, len(pool)))
    cases = [(w, t) for w in words for k in TYPO_KINDS if (t := typo(w, k)) is not None and not lex.known(t)]
    speller = Speller(lex)
    vocab = [t for t in lex.terms if t.isalpha()]
    df = {t: lex.count(t) for t in vocab}

    def fuzzy(term: str) -> str | None:
        limit = max_edits(term)
        if limit == 0:
            return None
        found = process.extract(term, vocab, scorer=OSA.distance, score_cutoff=limit, limit=20)
        if not found:
            return None
        best = min(d for _, d, _ in found)
        return max((t for t, d, _ in found if d == best), key=lambda t: (t[:1] == term[:1], df[t]))

    def sym(term: str) -> str | None:
        fix = speller.correct(term)
        return fix.corrected if fix else None

    rows = []
    for name, fn in (("symspellpy (shoprank's Speller)", sym), ("rapidfuzz OSA scan", fuzzy)):
        fn(cases[0][1])  # warm-up
        lat, right = [], 0
        for word, typed in cases:
            t = time.perf_counter()
            got = fn(typed)
            lat.append((time.perf_counter() - t) * 1e6)
            right += got == word
        rows.append(
            {
                "method": name,
                "typos": len(cases),
                "accuracy": round(right / len(cases), 4),
                "p50_us": round(float(np.percentile(lat, 50)), 1),
                "p95_us": round(float(np.percentile(lat, 95)), 1),
            }
        )
        print(rows[-1], flush=True)
    write_results(args.out, "speller", rows, key=("method",), run=this_run, markdown=_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
