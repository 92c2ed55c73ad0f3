"""Typo correction against the catalog's vocabulary, with symspellpy's symmetric-delete lookup.

Chosen by measurement (``python -m bench.speller``, ``bench/results/speller/``): on one-edit typos
of the catalog's naming terms, symspellpy and a rapidfuzz OSA scan of the vocabulary (same edit
budget and tie-breaks) correct about the same share back (symspellpy's plural spellings add a few
ties between two real words one edit away), and symspellpy answers several times faster.

The rules keep real words safe (after Algolia's defaults and Lucene's ``fuzziness: AUTO``):

* a term the catalog holds is never corrected (nor one ``confirm`` says the live index holds);
* words with a digit or other non-letter (model numbers such as ``tn-2110``, ``16gb``) and words
  of fewer than :data:`MIN_ONE_TYPO` letters are never corrected;
* one edit from :data:`MIN_ONE_TYPO` letters, two from :data:`MIN_TWO_TYPOS`;
* the fewest edits win; among equals, one that keeps the first letter (rarely mistyped), then
  the one that most products name (title, brand, category: what shoppers type) together with
  the query's other terms, then the one most products name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from indexer.analysis import minimal_english_stem
from ranker.query.lexicon import Lexicon

MIN_ONE_TYPO = 4
MIN_TWO_TYPOS = 8
# Dictionary words shorter than this are no correction targets (nor sources: see MIN_ONE_TYPO).
MIN_TARGET = 3


def _plurals(stem: str) -> list[str]:
    """The spellings :func:`~indexer.analysis.minimal_english_stem` takes back to ``stem``
    by its plural rules ("book" ← books, "battery" ← batteries, "boxe" ← boxes)."""
    forms = [stem + "s"]
    if stem.endswith("y"):
        forms.append(stem[:-1] + "ies")
    return [f for f in forms if minimal_english_stem(f) == stem]


@dataclass(frozen=True)
class Correction:
    original: str
    corrected: str
    edits: int


def max_edits(term: str) -> int:
    """How many edits a term may be corrected by (0: never)."""
    if not term.isalpha() or not term.isascii():
        return 0
    if len(term) >= MIN_TWO_TYPOS:
        return 2
    return 1 if len(term) >= MIN_ONE_TYPO else 0


class Speller:
    def __init__(self, lexicon: Lexicon):
        from symspellpy import SymSpell

        self.lexicon = lexicon
        self._sym = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
        # plural spellings too, each standing for its stem: a typo is an edit of what was typed,
        # and shoppers type plurals ("booksd" is one edit from "books", two from "book")
        self._stem_of: dict[str, str] = {}
        for t in (*lexicon.terms, *sorted(lexicon.other)):
            if len(t) >= MIN_TARGET and t.isalpha() and t.isascii():
                self._sym.create_dictionary_entry(t, 1 + lexicon.count(t))
                for form in _plurals(t):
                    if form not in self._stem_of and not lexicon.known(form):
                        self._stem_of[form] = t
                        self._sym.create_dictionary_entry(form, 1 + lexicon.count(t))

    def correct(
        self,
        term: str,
        context: Sequence[int] = (),
        confirm: Callable[[str], bool] | None = None,
        *,
        raw: str | None = None,
    ) -> Correction | None:
        """The correction of one analyzed term, or None when it must stay as typed.

        ``raw``: the term before stemming (looked up too: a typo can make the stemmer cut a
        letter, "wirelses" → "wirelse"); ``context``: lexicon ids of the query's other terms;
        ``confirm(word)``: whether the live index matches the word as typed (asked only before
        correcting, for words added since the lexicon was built)."""
        from symspellpy import Verbosity

        typed = raw or term
        limit = max_edits(typed)
        if limit == 0 or self.lexicon.known(term):
            return None
        found: dict[str, int] = {}
        for word in dict.fromkeys((term, typed)):
            for s in self._sym.lookup(word, Verbosity.ALL, max_edit_distance=limit, transfer_casing=False):
                stem = self._stem_of.get(s.term, s.term)
                if stem != term and s.distance < found.get(stem, limit + 1):
                    found[stem] = s.distance
        if not found:
            return None
        best = min(found.values())
        cands = sorted(t for t, d in found.items() if d == best)
        naming = [c for c in cands if self.lexicon.id(c) is not None]
        ids = np.asarray([self.lexicon.ids[c] for c in naming], dtype=np.int64)
        counts = self.lexicon.affinity(ids, context) if context else np.zeros(len(ids), dtype=np.int64)
        co = dict(zip(naming, counts.tolist(), strict=True))
        df = {c: self.lexicon.count(c) for c in cands}
        pick = min(
            range(len(cands)),
            key=lambda i: (cands[i][:1] != term[:1], -co.get(cands[i], 0), -df[cands[i]], cands[i]),
        )
        if confirm is not None and confirm(typed):
            return None
        return Correction(term, cands[pick], int(best))
