"""The catalog's own vocabulary: analyzed terms, how many products hold each, and which together.

Built from every product's analyzed text fields (:func:`indexer.analysis.analyze`, the chain both
backends index with), so a term here is exactly a term the lexical legs can match. Each product
gives its *naming* terms (title, name, brand, category: what shoppers type) and all its terms
(descriptions and attribute values too). It answers the three questions query understanding
asks: is a term real (``known``: any field), which naming terms start with a prefix
(``with_prefix``, a sorted array and two bisections), and how many products name a candidate
together with the rest of the query (``co_counts``, one sparse product).
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from scipy import sparse

from indexer.analysis import minimal_english_stem

# the brand's place among indexer.schema.NAMING_FIELDS (title, name, brand, category)
BRAND_FIELD = 2
# per product: the words of each naming field (NAMING_FIELDS order, before stemming), the analyzed
# terms of the other text fields, and (title, category) as written (ranker.query.types reads them)
NamedTerms = tuple[Sequence[Sequence[str]], Sequence[str], tuple[str, str]]


@runtime_checkable
class LexiconSource(Protocol):
    """A search backend that can list every product's words (:data:`NamedTerms`; naming words
    as :func:`indexer.analysis.raw_tokens` gives them)."""

    def naming_documents(self) -> Iterator[NamedTerms]: ...


@dataclass(frozen=True)
class Lexicon:
    terms: tuple[str, ...]  # the naming terms, sorted
    df: np.ndarray  # products naming each term (aligned with terms)
    incidence: sparse.csc_matrix  # products × terms, 1 where the product names the term
    other: frozenset[str] = frozenset()  # terms only found outside the naming fields
    ids: dict[str, int] = field(repr=False, default_factory=dict)
    surfaces: dict[str, str] = field(repr=False, default_factory=dict)  # term → its commonest spelling
    brands: frozenset[tuple[str, ...]] = frozenset()  # every brand, as its analyzed terms
    described: tuple[str, ...] = field(repr=False, default=())  # ``other``, sorted

    @classmethod
    def from_documents(cls, docs: Iterable[NamedTerms]) -> Lexicon:
        """Per product: (its naming fields' words before stemming, all its other terms analyzed,
        and optionally its title and category as written)."""
        vocab: dict[str, int] = {}
        rest: set[str] = set()
        spelled: dict[str, Counter[str]] = {}
        rows: list[int] = []
        cols: list[int] = []
        n = 0
        brands: set[tuple[str, ...]] = set()
        for n, (naming, others, *_) in enumerate(docs, start=1):
            if len(naming) > BRAND_FIELD and naming[BRAND_FIELD]:
                brands.add(tuple(minimal_english_stem(w) for w in naming[BRAND_FIELD]))
            seen: set[str] = set()
            for raw in (w for words in naming for w in words):
                t = minimal_english_stem(raw)
                spelled.setdefault(t, Counter())[raw] += 1
                if t not in seen:
                    seen.add(t)
                    j = vocab.setdefault(t, len(vocab))
                    rows.append(n - 1)
                    cols.append(j)
            rest.update(others)
        order = sorted(vocab, key=vocab.__getitem__)
        terms = sorted(vocab)
        remap = np.empty(len(vocab), dtype=np.int64)
        pos = {t: i for i, t in enumerate(terms)}
        for old, t in enumerate(order):
            remap[old] = pos[t]
        c = remap[np.asarray(cols, dtype=np.int64)] if cols else np.zeros(0, dtype=np.int64)
        r = np.asarray(rows, dtype=np.int64)
        inc = sparse.csc_matrix(
            (np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, len(terms)), dtype=np.float32
        )
        df = np.asarray(inc.sum(axis=0), dtype=np.int64).ravel()
        surfaces = {t: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, c in spelled.items()}
        other = frozenset(rest - vocab.keys())
        return cls(tuple(terms), df, inc, other, pos, surfaces, frozenset(brands), tuple(sorted(other)))

    @property
    def n_docs(self) -> int:
        return int(self.incidence.shape[0])

    def __len__(self) -> int:
        return len(self.terms)

    def surface(self, term: str) -> str:
        """How the catalog spells a term most often ("len" → "lens", "headphone" → "headphones")."""
        return self.surfaces.get(term, term)

    def brands_in(self, terms: Sequence[str]) -> list[tuple[str, ...]]:
        """The brands whose terms appear, contiguous, in ``terms`` (longest first, no overlaps)."""
        found: list[tuple[str, ...]] = []
        used: set[int] = set()
        for n in range(min(len(terms), 4), 0, -1):
            for i in range(len(terms) - n + 1):
                span = tuple(terms[i : i + n])
                if span in self.brands and not used & set(range(i, i + n)):
                    found.append(span)
                    used |= set(range(i, i + n))
        return found

    def id(self, term: str) -> int | None:
        return self.ids.get(term)

    def known(self, term: str) -> bool:
        """Whether some product holds the term in any text field."""
        return term in self.ids or term in self.other

    def count(self, term: str) -> int:
        j = self.ids.get(term)
        return 0 if j is None else int(self.df[j])

    def with_prefix(self, prefix: str) -> np.ndarray:
        """Ids of the terms that start with ``prefix`` (the prefix itself included when a term)."""
        if not prefix:
            return np.zeros(0, dtype=np.int64)
        lo = bisect.bisect_left(self.terms, prefix)
        hi = bisect.bisect_left(self.terms, prefix + "\U0010ffff")
        return np.arange(lo, hi, dtype=np.int64)

    def described_with_prefix(self, prefix: str) -> list[str]:
        """Terms only descriptions hold ("earbuds" in "true wireless earbuds with …") that start
        with ``prefix``, shortest first."""
        if not prefix:
            return []
        rest = self.described
        lo = bisect.bisect_left(rest, prefix)
        hi = bisect.bisect_left(rest, prefix + "\U0010ffff")
        return sorted(rest[lo:hi], key=lambda t: (len(t), t))

    def naming_all(self, ids: Sequence[int]) -> int:
        """How many products name every one of these terms (sorted-index intersections, rarest first)."""
        rows = None
        for j in sorted(set(ids), key=lambda j: int(self.df[j])):
            col = self.incidence.indices[self.incidence.indptr[j] : self.incidence.indptr[j + 1]]
            rows = col if rows is None else np.intersect1d(rows, col, assume_unique=True)
            if len(rows) == 0:
                return 0
        return 0 if rows is None else len(rows)

    def context_mask(self, context: Sequence[int]) -> np.ndarray | None:
        """Products holding every context term (None without context)."""
        if not context:
            return None
        mask = np.ones(self.n_docs, dtype=bool)
        for j in dict.fromkeys(context):
            col = np.zeros(self.n_docs, dtype=bool)
            col[self.incidence.indices[self.incidence.indptr[j] : self.incidence.indptr[j + 1]]] = True
            mask &= col
        return mask

    def co_counts(self, candidates: np.ndarray, context: Sequence[int]) -> np.ndarray:
        """Per candidate term: products holding it and every context term (its df without context)."""
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.int64)
        mask = self.context_mask(context)
        if mask is None:
            return self.df[candidates].copy()
        sub = self.incidence[:, candidates]
        return np.asarray(sub.T @ mask.astype(np.float32), dtype=np.int64).ravel()

    def affinity(self, candidates: np.ndarray, context: Sequence[int]) -> np.ndarray:
        """How well each candidate fits the context: products naming it with every context term;
        where none do, products naming it with any one of them (summed); where none do either,
        the products naming it at all."""
        co = self.co_counts(candidates, context)
        if co.any() or not context:
            return co
        if len(set(context)) > 1:
            pair = np.zeros(len(candidates), dtype=np.int64)
            for j in dict.fromkeys(context):
                pair += self.co_counts(candidates, [j])
            if pair.any():
                return pair
        return self.df[candidates].copy()

    def fingerprint(self) -> str:
        """A short hash of the vocabulary and counts (tells two lexicons apart in a manifest)."""
        h = hashlib.sha256()
        for t, c in zip(self.terms, self.df.tolist(), strict=True):
            h.update(f"{t}\0{c}\n".encode())
        for t in sorted(self.other):
            h.update(f"{t}\n".encode())
        return h.hexdigest()[:16]


def lexicon_of(source: object) -> Lexicon | None:
    """The lexicon of a backend that is a :class:`LexiconSource` (None for one that is not)."""
    if not isinstance(source, LexiconSource):
        return None
    return Lexicon.from_documents(source.naming_documents())
