"""Lexical match features of a candidate: how much of the query its fields cover.

BM25 scores one bag of fields, so "laptop" matches a laptop sleeve as well as a laptop. Coverage
asks a different question: which share of the query's terms does the *title* hold, which share do
all the product's fields hold, does some field hold every one of them (the strict keyword leg's
match rule, read over the same fields: name and description too), and is the product's brand named
in the query. The terms come from
the same analysis chain as the index (lowercase, ASCII folding, light English stemming), so
"Laptops" covers "laptop". Each feature lies in [0, 1]; with no query they are 0 (neutral).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from indexer.analysis import analyze
from indexer.product import Product
from indexer.schema import STRICT_FIELDS, text_fields
from ranker.lazy import LRU

LEXICAL_FEATURES = ("title_coverage", "field_coverage", "brand_in_query", "all_terms")


FieldTokens = Mapping[str, frozenset[str]]


def field_tokens(p: Product) -> FieldTokens:
    """A product's analyzed terms per text field."""
    return {f: frozenset(analyze(text or "")) for f, text in text_fields(p).items()}


class FieldTerms:
    """:func:`field_tokens` for the products seen last, so a query does not analyze its
    candidates' text again (a bounded LRU; thread-safe). Keyed by the product's id and text: an
    upserted product is analyzed afresh, and a stale entry ages out."""

    def __init__(self, size: int = 50_000):
        if size < 1:
            raise ValueError("size must be at least 1")
        self._cache: LRU[tuple[str, ...], FieldTokens] = LRU(size)

    def __len__(self) -> int:
        return len(self._cache)

    def __call__(self, p: Product) -> FieldTokens:
        key = (p.id, *text_fields(p).values())
        tokens = self._cache.get(key)
        if tokens is None:
            tokens = field_tokens(p)
            self._cache.put(key, tokens)
        return tokens


def lexical_features(
    query: str | None,
    products: Sequence[Product | None],
    tokens_of: Callable[[Product], FieldTokens] = field_tokens,
) -> np.ndarray:
    """Rows = products, columns = :data:`LEXICAL_FEATURES`. A missing product gets zeros.
    ``tokens_of``: a product's analyzed field terms (a :class:`FieldTerms` cache on the hot path)."""
    out = np.zeros((len(products), len(LEXICAL_FEATURES)), dtype=np.float64)
    terms = set(analyze(query or ""))
    if not terms:
        return out
    for i, p in enumerate(products):
        if p is None:
            continue
        tokens = tokens_of(p)
        title, brand = tokens["title"], tokens["brand"]
        fields = title | brand | tokens["category"] | tokens["attributes_text"]
        out[i, 0] = len(terms & title) / len(terms)
        out[i, 1] = len(terms & fields) / len(terms)
        out[i, 2] = 1.0 if brand and brand <= terms else 0.0
        out[i, 3] = 1.0 if terms <= frozenset().union(*(tokens[f] for f in STRICT_FIELDS)) else 0.0
    return out
