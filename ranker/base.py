"""The retrieval role: request/response types and the protocol each search backend implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from indexer.errors import BadInputError
from indexer.manifest import Manifest
from indexer.product import Product

MAX_QUERY_CHARS = 1000
MAX_K = 1000
MAX_EXPANSIONS = 10


class Choice(StrEnum):
    """A string enum whose ``parse`` refuses unknown values with the list of choices."""

    @classmethod
    def parse(cls, value: str) -> Self:
        try:
            return cls(value)
        except ValueError:
            what = cls.__name__.lower()
            raise BadInputError(
                f"unknown {what} {value!r}; choose from {', '.join(m.value for m in cls)}"
            ) from None


class Mode(Choice):
    BM25 = "bm25"
    VECTOR = "vector"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class Filters:
    """Filters applied inside the engine (before top-N), never after."""

    brands: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None

    def __post_init__(self) -> None:
        for name in ("price_min", "price_max"):
            v = getattr(self, name)
            if v is not None and (v != v or v < 0):
                raise BadInputError(f"{name} must be a number >= 0, got {v!r}")
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise BadInputError(f"price_min ({self.price_min}) is greater than price_max ({self.price_max})")

    @property
    def empty(self) -> bool:
        return not self.brands and self.price_min is None and self.price_max is None and self.in_stock is None

    def accepts(self, p: Product) -> bool:
        """Reference semantics (used by the embedded backend; OpenSearch must agree)."""
        if self.brands and p.brand.lower() not in {b.lower() for b in self.brands}:
            return False
        if self.price_min is not None and (p.price is None or p.price < self.price_min):
            return False
        if self.price_max is not None and (p.price is None or p.price > self.price_max):
            return False
        return not (self.in_stock is not None and p.in_stock is not None and p.in_stock != self.in_stock)


@dataclass(frozen=True)
class Constraint:
    """A soft preference read from the query ("under 100", "55 inch", "16gb", "4k"): a kind,
    bounds in its canonical unit (None: open), and the words it was read from."""

    kind: str  # price | diagonal | capacity | resolution | power | battery | refresh | sensor
    low: float | None
    high: float | None
    unit: str  # the canonical unit ("" for prices: the catalog's currency)
    text: str


@dataclass(frozen=True)
class TypeIntent:
    """The product type a query asks for (ranker.query.types reads it from the query's last word)."""

    head: str  # the query's last word, the head of the types it asks for ("printer")
    words: frozenset[str]  # all the query's analyzed terms
    phrases: tuple[str, ...] = ()  # the catalog's types that fit best, commonest first

    def __post_init__(self) -> None:
        if not isinstance(self.head, str) or not self.head or self.head not in self.words:
            raise BadInputError("a type intent's head must be one of the query's words")
        if len(self.words) > 64 or len(self.phrases) > 10:
            raise BadInputError("a type intent holds at most 64 words and 10 types")


@dataclass(frozen=True)
class Scored:
    id: str
    score: float


@dataclass(frozen=True)
class SourceScore:
    """One retrieval source's view of a hit: its raw score and 1-based rank (None: not retrieved)."""

    score: float | None
    rank: int | None


@dataclass(frozen=True)
class Hit:
    """A ranked product. ``rank`` is 1-based; 0 marks a reranking candidate that only the strict
    keyword leg brought (the first stage did not rank it)."""

    id: str
    score: float
    rank: int
    sources: Mapping[str, SourceScore]
    product: Product | None = None


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    mode: Mode
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    # what query understanding made of the text (ranker.query.rewrite.Interpretation), if it ran
    interpretation: Any = None


@runtime_checkable
class SearchBackend(Protocol):
    """What retrieval needs from a store. Scores: BM25 raw scores; cosine similarity for vectors."""

    name: str

    def lexical(
        self, query: str, n: int, filters: Filters, expansions: Sequence[tuple[str, float]] = ()
    ) -> list[Scored]:
        """BM25 of the query (plus its synonym-expanded form), plus ``weight`` × BM25 of each
        expansion term (a completion of the word being typed); products matching any of them."""
        ...

    def knn(self, vector: np.ndarray, n: int, filters: Filters) -> list[Scored]: ...

    def hybrid(
        self,
        query: str,
        vector: np.ndarray,
        n: int,
        filters: Filters,
        expansions: Sequence[tuple[str, float]] = (),
    ) -> tuple[list[Scored], list[Scored]]:
        """Both candidate lists (one round trip where the engine allows)."""
        ...

    def strict_lexical(self, query: str, n: int, filters: Filters) -> list[Scored]:
        """The strict keyword leg: products holding every query term in one of the text fields,
        each term scored by its best field's BM25 (see :class:`~ranker.retrieval.bm25.BestFieldBM25`)."""
        ...

    def lexical_scores(
        self, query: str, ids: Sequence[str], expansions: Sequence[tuple[str, float]] = ()
    ) -> dict[str, float]:
        """:meth:`lexical`'s scores of given products (ids that do not match are absent)."""
        ...

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]: ...

    def fetch(self, ids: Sequence[str]) -> dict[str, Product]: ...

    def count(self) -> int: ...

    def manifest(self) -> Manifest | None: ...


@runtime_checkable
class EanLookup(Protocol):
    """Backends that can name the product carrying an EAN (shopper events refer to products so)."""

    def ids_for_eans(self, eans: Sequence[str]) -> dict[str, str]: ...


@runtime_checkable
class Reranker(Protocol):
    """Scores products for a query (higher = more relevant), in input order."""

    name: str

    def score(self, query: str, products: Sequence[Product]) -> np.ndarray: ...


@dataclass(frozen=True)
class SearchRequest:
    query: str
    k: int = 10
    mode: Mode = Mode.HYBRID
    filters: Filters = field(default_factory=Filters)
    with_products: bool = True
    exact: bool = False  # search the text as typed: no typo correction, no completion
    # (term, weight) pairs OR'd into the lexical leg (query understanding's completions)
    expansions: tuple[tuple[str, float], ...] = ()
    # soft preferences ranking reads as a feature (query understanding's parsed numbers)
    constraints: tuple[Constraint, ...] = ()
    # the product type asked for, a feature too (query understanding's reading of the last word)
    intent: TypeIntent | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise BadInputError("query is empty; type some words to search for")
        if len(self.query) > MAX_QUERY_CHARS:
            raise BadInputError(f"query is {len(self.query)} characters; the limit is {MAX_QUERY_CHARS}")
        if not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise BadInputError(f"k must be an integer between 1 and {MAX_K}, got {self.k!r}")
        object.__setattr__(self, "mode", Mode.parse(self.mode))
        if len(self.expansions) > MAX_EXPANSIONS or not all(
            isinstance(t, str) and 0 < len(t) <= 200 and isinstance(w, int | float) and 0 < w <= 1
            for t, w in self.expansions
        ):
            raise BadInputError(
                f"expansions must be at most {MAX_EXPANSIONS} (term, weight) pairs, each a term of 1-200 "
                "characters and a weight in (0, 1]"
            )


@dataclass(frozen=True)
class SearchOptions:
    """Per-request ranking options (a first-stage searcher ignores them)."""

    diversity: float = 0.0  # 0 = pure relevance order; MMR λ = 1 - diversity
    weights: Mapping[str, float] | None = None  # per-request fusion weight overrides
    explain: bool = False
    user_affinity: Mapping[str, float] = field(default_factory=dict)
    user_id: str | None = None  # a shopper with a profile gets personal_affinity from it

    def __post_init__(self) -> None:
        if not 0.0 <= self.diversity <= 1.0:
            raise BadInputError(f"diversity must be between 0 and 1, got {self.diversity}")


class Searcher(Protocol):
    """The search role: every named pipeline (``ranker.ranking.pipelines.PIPELINES``) has this shape."""

    def search(self, req: SearchRequest, options: SearchOptions | None = None) -> SearchResult: ...
