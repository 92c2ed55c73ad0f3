"""Shopper-style variants of judged queries: one-edit typos and search-as-you-type prefixes.

A variant keeps the clean query's judgments, so the same qrels score it. Variants are made by
rules, deterministically (a seed per query and kind), never by looking at the judged products:

* typos, in the query's longest word (the first of equal length; words of fewer than
  :data:`MIN_TYPO_WORD` letters are left alone, so such queries have no typo variant):
  ``transposition`` (two neighbouring letters swapped), ``deletion`` (a letter dropped),
  ``insertion`` (a neighbouring key's letter added), ``substitution`` (a letter replaced by a
  neighbouring key on a QWERTY keyboard); the first letter is never touched, as shoppers rarely
  mistype it (Algolia and Lucene's fuzzy ``prefix_length`` assume the same);
* prefixes: the query's last word cut to a share of its letters (:data:`PREFIX_CUTS`), at least
  one letter kept and at least one dropped, as a search-as-you-type box sends while the shopper
  types; words of fewer than :data:`MIN_PREFIX_WORD` letters are not cut.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

TYPO_KINDS = ("transposition", "deletion", "insertion", "substitution")
PREFIX_CUTS = (0.34, 0.5, 0.67)
MIN_TYPO_WORD = 4
MIN_PREFIX_WORD = 3

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _neighbours() -> dict[str, str]:
    pos = {c: (r, i) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
    out: dict[str, str] = {}
    for c, (r, i) in pos.items():
        near = [
            d
            for d, (r2, i2) in pos.items()
            if d != c and abs(r2 - r) <= 1 and abs((i2 + 0.5 * r2) - (i + 0.5 * r)) <= 1.0
        ]
        out[c] = "".join(sorted(near))
    return out


NEIGHBOURS: Mapping[str, str] = _neighbours()


@dataclass(frozen=True)
class Variant:
    clean: str  # the judged query
    typed: str  # what the shopper typed
    kind: str  # a TYPO_KINDS member, or "prefix-<share>"


def _rng(query: str, kind: str) -> random.Random:
    seed = int.from_bytes(hashlib.sha256(f"{kind}\0{query}".encode()).digest()[:8], "big")
    return random.Random(seed)


def _words(query: str) -> list[re.Match[str]]:
    return list(_WORD.finditer(query))


def _letter_positions(word: str) -> list[int]:
    return [i for i, c in enumerate(word) if c.isalpha() and i > 0]


def typo(query: str, kind: str) -> str | None:
    """``query`` with one edit of ``kind`` in its longest word; None when it has no word to edit."""
    if kind not in TYPO_KINDS:
        raise ValueError(f"unknown typo kind {kind!r}; choose from {', '.join(TYPO_KINDS)}")
    words = [m for m in _words(query) if sum(c.isalpha() for c in m.group(0)) >= MIN_TYPO_WORD]
    if not words:
        return None
    m = max(words, key=lambda w: (len(w.group(0)), -w.start()))
    word, rng = m.group(0), _rng(query, kind)
    letters = _letter_positions(word)
    edited = None
    if kind == "transposition":
        pairs = [i for i in letters if i + 1 < len(word) and word[i + 1].isalpha() and word[i] != word[i + 1]]
        if pairs:
            i = rng.choice(pairs)
            edited = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    elif kind == "deletion":
        i = rng.choice(letters)
        edited = word[:i] + word[i + 1 :]
    elif kind == "insertion":
        i = rng.choice(letters)
        near = NEIGHBOURS.get(word[i].lower(), "")
        if near:
            edited = word[: i + 1] + rng.choice(near) + word[i + 1 :]
    else:
        cand = [i for i in letters if NEIGHBOURS.get(word[i].lower())]
        if cand:
            i = rng.choice(cand)
            edited = word[:i] + rng.choice(NEIGHBOURS[word[i].lower()]) + word[i + 1 :]
    if edited is None or edited == word:
        return None
    return query[: m.start()] + edited + query[m.end() :]


def prefix(query: str, share: float) -> str | None:
    """``query`` with its last word cut to ``share`` of its letters; None when it is too short."""
    words = _words(query)
    if not words:
        return None
    m = words[-1]
    word = m.group(0)
    if len(word) < MIN_PREFIX_WORD:
        return None
    keep = min(len(word) - 1, max(1, round(len(word) * share)))
    return query[: m.start()] + word[:keep]


def variants(queries: list[str]) -> list[Variant]:
    """Every typo kind and prefix cut of every query that allows it, in a stable order."""
    out: list[Variant] = []
    for q in queries:
        for kind in TYPO_KINDS:
            t = typo(q, kind)
            if t is not None:
                out.append(Variant(q, t, kind))
        for share in PREFIX_CUTS:
            p = prefix(q, share)
            if p is not None:
                out.append(Variant(q, p, f"prefix-{share:.2f}"))
    return out
