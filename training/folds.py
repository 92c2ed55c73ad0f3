"""Query-level cross-validation folds that keep near-duplicate queries together.

Only ~100 judged queries exist, and several are near-duplicates of each other ("laptop" /
"laptops", "smartwatch" / "smart watch", see :func:`query_keys`). If one
variant sits in a fold's training data and another in its test data, the fold measures memory,
not ranking. Every split here is therefore made over *groups* of queries that share a key.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from indexer.analysis import Synonyms, analyze

# Function words dropped from a key ("case for iphone" == "iphone case"), unless nothing else is left.
_STOPWORDS = frozenset({"a", "an", "and", "for", "in", "of", "on", "the", "to", "with"})
# minimal_english leaves "-es" plurals after sibilants half-folded ("boxes" -> "boxe", "box" -> "box").
_SIBILANT_E = ("xe", "she", "che", "sse", "ze")


def _fold_plural(tok: str) -> str:
    """Finish the plural folding the minimal English stemmer leaves undone.

    Applied to both forms alike, so any over-stripping is harmless for grouping:
    "boxes" -> "boxe" -> "box"; "glasses" -> "glasse" -> "glass"; "cache" and "caches" both -> "cach".
    """
    if len(tok) > 3 and tok.endswith(_SIBILANT_E):
        return tok[:-1]
    return tok


def query_group_key(query: str) -> str:
    """Normalized key under which near-duplicate queries collide.

    Case, accents, punctuation, word order, repeated words, a few function words and English
    plurals are ignored: "Laptops!", "laptop" and "LAPTOP" share a key, as do "hp toner" and
    "toner HP". Different words keep different keys ("laptop bag" vs "laptop"); spelling
    variants that tokenize differently ("smartwatch" vs "smart watch") get different keys here
    and meet through :func:`query_keys`.
    """
    toks = {_fold_plural(t) for t in analyze(query)}
    content = toks - _STOPWORDS
    return " ".join(sorted(content or toks))


def query_keys(query: str, synonyms: Synonyms | None = None) -> frozenset[str]:
    """Every key a query is matched on: :func:`query_group_key` plus its compound form.

    The compound form is the folded tokens joined in order without spaces, so "smart watch"
    meets "smartwatch" and "head set" meets "headset". With ``synonyms`` (opt-in), a query
    containing a phrase of a synonym group also gets that group's key, so "laptop" meets
    "notebook". Two queries are near-duplicates when their key sets intersect.
    """
    toks = [_fold_plural(t) for t in analyze(query)]
    content = [t for t in toks if t not in _STOPWORDS] or toks
    keys = {query_group_key(query), "".join(content)}
    if synonyms is not None:
        raw = analyze(query)
        for group in synonyms.groups:
            if any(_contains(raw, phrase) for phrase in group):
                keys.add("syn:" + " ".join(group[0]))
    keys.discard("")
    return frozenset(keys)


def _contains(tokens: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return any(list(tokens[i : i + n]) == list(phrase) for i in range(len(tokens) - n + 1))


def _unique(queries: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(queries))


def group_queries(queries: Iterable[str], synonyms: Synonyms | None = None) -> dict[str, list[str]]:
    """Near-duplicate groups (queries whose :func:`query_keys` intersect, transitively).

    Keyed by the group's first query's :func:`query_group_key`; keys and members keep
    first-seen order; repeated queries are dropped.
    """
    ordered = _unique(queries)
    parent = list(range(len(ordered)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, q in enumerate(ordered):
        for key in query_keys(q, synonyms):
            if key in owner:
                a, b = find(owner[key]), find(i)
                parent[max(a, b)] = min(a, b)
            else:
                owner[key] = i
    groups: dict[str, list[str]] = {}
    for i, q in enumerate(ordered):
        groups.setdefault(query_group_key(ordered[find(i)]), []).append(q)
    return groups


def kfold_queries(
    queries: Sequence[str], k: int = 5, seed: int = 13, synonyms: Synonyms | None = None
) -> list[tuple[list[str], list[str]]]:
    """Deterministic query-level k-fold: ``[(train_queries, test_queries), ...]``, one per fold.

    Groups of near-duplicate queries (:func:`group_queries`) are shuffled with ``seed``, then
    placed largest first, each into the fold that holds the fewest queries so far (ties to the
    lowest fold index; with equal-sized groups this is plain round-robin). Guarantees: no group
    is in both train and test of a fold (``leaks(train, test)`` is empty), and every distinct
    query is in exactly one test fold. Queries keep their input order inside each list.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    groups = group_queries(queries, synonyms)
    if len(groups) < k:
        raise ValueError(f"cannot make {k} folds from {len(groups)} query groups")
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    keys.sort(key=lambda key: -len(groups[key]))  # stable: the shuffle orders groups of equal size
    fold_of: dict[str, int] = {}
    sizes = [0] * k
    for key in keys:
        f = min(range(k), key=lambda i: (sizes[i], i))
        sizes[f] += len(groups[key])
        for q in groups[key]:
            fold_of[q] = f
    ordered = _unique(queries)
    return [
        ([q for q in ordered if fold_of[q] != f], [q for q in ordered if fold_of[q] == f]) for f in range(k)
    ]


def leaks(
    train_queries: Iterable[str], test_queries: Iterable[str], synonyms: Synonyms | None = None
) -> set[str]:
    """Keys (see :func:`query_keys`) present on both sides; empty when the split is clean."""
    train = set().union(*(query_keys(q, synonyms) for q in train_queries))
    test = set().union(*(query_keys(q, synonyms) for q in test_queries))
    return train & test


class _HasQuery(Protocol):
    @property
    def query(self) -> str: ...


E = TypeVar("E", bound=_HasQuery)


def filter_leaking(
    examples: Iterable[E], test_queries: Iterable[str], synonyms: Synonyms | None = None
) -> list[E]:
    """Drop examples whose query is a near-duplicate (shares a key) of one of the test queries.

    Used for catalog pseudo-queries, which can coincide with a held-out storefront query
    ("notebook" mined from a product type while "notebooks" is being tested).
    """
    banned: set[str] = set().union(*(query_keys(q, synonyms) for q in test_queries))
    if not banned:
        return list(examples)
    return [e for e in examples if not query_keys(e.query, synonyms) & banned]
