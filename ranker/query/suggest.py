"""Search-box suggestions: completions of what the shopper is typing, with their product counts.

Two sources, never the evaluation's judgments:

* the catalog's phrases: brands, categories and the word n-grams (1–3 words) that at least
  :data:`MIN_PHRASE_PRODUCTS` products name in their titles, scored by how many products name them;
* the shop's query log (UBI ``ubi_queries`` + ``ubi_events``): queries after which shoppers
  clicked, added to cart or bought, weighted by how many *distinct* shoppers did (a flood from one
  client counts once), counting only events the service can vouch for (trusted, or a browser's
  event on a product its search showed), so fabricated events buy no suggestion.

A suggestion matches when its words start with the typed words, the last one as a prefix.
Typos are forgiven: complete words go through the speller, and a last word of 4+ letters also
matches terms whose start is one edit from it. Each suggestion says how many products name all
its words (lexicon incidence, exact).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from indexer.analysis import analyze, raw_tokens
from ranker.query.lexicon import Lexicon
from ranker.query.speller import Speller

MAX_SUGGESTIONS = 10
MIN_PHRASE_PRODUCTS = 3
MAX_NGRAM = 3
# Query-log suggestions outrank catalog phrases of the same product count: shoppers typed them and
# then engaged. Score = log1p(products) + QUERY_LOG_WEIGHT × log1p(engaged shoppers).
QUERY_LOG_WEIGHT = 2.0
# "item_click": the Chorus UBI log's click (ranker.signals.personalization weighs it as a click).
ENGAGED = frozenset({"click", "item_click", "add_to_cart", "purchase", "conversion"})
# Words that neither start nor end a catalog phrase ("for", "with", …: glue, not intent).
FUNCTION_WORDS = frozenset(
    {"a", "an", "and", "for", "from", "in", "of", "on", "or", "the", "to", "with", "by"}
)
GLUE = FUNCTION_WORDS | {"x", "cm", "mm"}
MIN_FUZZY_PREFIX = 4
MAX_COMPOSED_CANDIDATES = 300


@dataclass(frozen=True)
class Suggestion:
    text: str  # as the catalog spells its words
    products: int  # products naming every word of it
    source: str  # "catalog" or "queries"
    score: float


@dataclass(frozen=True)
class _Entry:
    text: str
    source: str
    weight: float  # before the product count


def _phrase_ok(words: Sequence[str]) -> bool:
    return (
        words[0] not in GLUE
        and words[-1] not in GLUE
        and any(c.isalpha() for c in words[0])
        and any(c.isalpha() for c in words[-1])
    )


def catalog_phrases(naming: Iterable[Sequence[str]], extra: Iterable[str] = ()) -> Counter[str]:
    """Phrase → products naming it: word n-grams of each product's naming terms (counted once per
    product), plus whole ``extra`` phrases (brands, categories)."""
    counts: Counter[str] = Counter()
    for terms in naming:
        seen: set[str] = set()
        for n in range(1, MAX_NGRAM + 1):
            for i in range(len(terms) - n + 1):
                words = terms[i : i + n]
                if _phrase_ok(words):
                    seen.add(" ".join(words))
        counts.update(seen)
    for phrase in extra:  # brands and categories are suggested however few products carry them
        words = analyze(phrase)
        if words:
            key = " ".join(words)
            counts[key] = max(counts[key], MIN_PHRASE_PRODUCTS)
    return counts


def engaged_queries(
    queries: Mapping[str, str], events: Iterable[tuple[str | None, str, str, bool]]
) -> dict[str, int]:
    """Query text (analyzed) → distinct shoppers who engaged after it. ``queries``: query id →
    the text typed; ``events``: (query id, client id, action, vouched for)."""
    who: dict[str, set[str]] = defaultdict(set)
    for qid, client, action, vouched in events:
        if qid is None or not vouched or action not in ENGAGED:
            continue
        text = queries.get(qid)
        if text:
            words = analyze(text)
            if words:
                who[" ".join(words)].add(client)
    return {q: len(c) for q, c in who.items()}


class Suggester:
    """Suggestions held as one sorted key array (prefix = two bisections) with each key's score,
    product count and source precomputed, so a keystroke costs a slice and a partial sort."""

    def __init__(
        self,
        lexicon: Lexicon,
        phrases: Mapping[str, int],
        queries: Mapping[str, int] | None = None,
        *,
        speller: Speller | None = None,
    ):
        self.lexicon = lexicon
        self.speller = speller or Speller(lexicon)
        entries: dict[str, _Entry] = {}
        for text, n in phrases.items():
            if n >= MIN_PHRASE_PRODUCTS:
                entries[text] = _Entry(text, "catalog", 0.0)
        for text, shoppers in (queries or {}).items():
            if shoppers > 0:
                entries[text] = _Entry(text, "queries", QUERY_LOG_WEIGHT * math.log1p(shoppers))
        keys, counts, scores, sources = [], [], [], []
        for text in sorted(entries):
            n = self.products(text)
            if n == 0:
                continue  # nothing in the catalog names all its words
            e = entries[text]
            keys.append(text)
            counts.append(n)
            scores.append(math.log1p(n) + e.weight)
            sources.append(e.source)
        self._keys = keys
        self._count = np.asarray(counts, dtype=np.int64)
        self._score = np.asarray(scores, dtype=np.float64)
        self._source = sources
        self._starts = self._start_index()

    def _start_index(self) -> object:
        """A symmetric-delete index of the naming terms' starts (4-8 letters), for typo'd prefixes."""
        from symspellpy import SymSpell

        sym = SymSpell(max_dictionary_edit_distance=1, prefix_length=8)
        for t, c in zip(self.lexicon.terms, self.lexicon.df.tolist(), strict=True):
            if t.isalpha() and t.isascii():
                for n in range(MIN_FUZZY_PREFIX, min(len(t), 8) + 1):
                    sym.create_dictionary_entry(t[:n], int(c))
        return sym

    def __len__(self) -> int:
        return len(self._keys)

    def products(self, text: str) -> int:
        """Products naming every word of ``text`` (0 when a word is no naming term)."""
        ids = [self.lexicon.id(w) for w in text.split()]
        if not ids or any(j is None for j in ids):
            return 0
        return self.lexicon.naming_all([j for j in ids if j is not None])

    def _spelled(self, text: str) -> str:
        return " ".join(self.lexicon.surface(w) for w in text.split())

    def _top(self, prefix: str, k: int) -> list[int]:
        """Indices of the ``k`` best-scored keys starting with ``prefix`` (ending in NUL: equal to
        the rest)."""
        if prefix.endswith("\0"):
            i = bisect.bisect_left(self._keys, prefix[:-1])
            return [i] if i < len(self._keys) and self._keys[i] == prefix[:-1] else []
        lo = bisect.bisect_left(self._keys, prefix)
        hi = bisect.bisect_left(self._keys, prefix + "\U0010ffff")
        if hi - lo <= k:
            return list(range(lo, hi))
        part = np.argpartition(-self._score[lo:hi], k - 1)[:k]
        return [lo + int(i) for i in part]

    def _prefixes(self, words: list[str], open_end: bool, raw: str = "") -> tuple[list[str], list[str]]:
        """The key prefixes to look up: the typed words (typos corrected) and, for the last word,
        its fuzzy alternatives; and the corrected head words. ``raw``: the last word as typed, which
        an open end matches by its letters ("cas" is no plural of "ca"); its stem then counts as a
        whole word only ("cases" → "case", "case black")."""
        head = []
        for i, w in enumerate(words[:-1]):
            if self.lexicon.known(w):
                head.append(w)
                continue
            ctx = [j for k, t in enumerate(words) if k != i and (j := self.lexicon.id(t)) is not None]
            fix = self.speller.correct(w, ctx)
            head.append(fix.corrected if fix else w)
        last = words[-1]
        whole: list[str] = []
        if open_end and raw and raw != last:
            whole = [last] if self.lexicon.known(last) else []
            last = raw
        lasts = [last]
        if not self.lexicon.known(words[-1]) and not self.lexicon.known(last):  # a whole word mistyped
            ctx = [j for w in head if (j := self.lexicon.id(w)) is not None]
            fix = self.speller.correct(words[-1], ctx, raw=last)
            if fix:
                lasts.append(fix.corrected)
        if open_end and len(last) >= MIN_FUZZY_PREFIX and last.isalpha():  # a word being mistyped
            lasts += self._fuzzy_starts(last)
        stem = " ".join(head)
        out = []
        for w in dict.fromkeys(lasts):
            text = f"{stem} {w}" if stem else w
            out.append(text if open_end else text + " ")
            if not open_end:
                out.append(text)
        for w in whole:
            text = f"{stem} {w}" if stem else w
            out += [text + " ", text + "\0"]  # "\0": the key itself, nothing longer
        return out, head

    def _fuzzy_starts(self, typed: str) -> list[str]:
        """Starts of naming terms one edit from ``typed`` (a typo in the word being typed)."""
        from symspellpy import Verbosity

        found = self._starts.lookup(typed, Verbosity.ALL, max_edit_distance=1)  # type: ignore[attr-defined]
        keep = [x for x in found if x.term != typed and x.term[:1] == typed[:1]]
        return [x.term for x in sorted(keep, key=lambda x: (x.distance, -x.count))[:5]]

    def _composed(self, head: list[str], last: str, open_end: bool) -> list[str]:
        """The typed words followed by the likeliest naming terms that start with the last one,
        likeliest = most products naming them with the other words (the catalog's word order
        need not match the shopper's: "wireless mo" → "wireless mouse")."""
        if not open_end:
            return []
        cands = self.lexicon.with_prefix(last)
        if len(cands) == 0:
            return []
        if len(cands) > MAX_COMPOSED_CANDIDATES:  # a short prefix: its most frequent terms
            cands = cands[
                np.argpartition(-self.lexicon.df[cands], MAX_COMPOSED_CANDIDATES - 1)[
                    :MAX_COMPOSED_CANDIDATES
                ]
            ]
        ctx = [j for w in head if (j := self.lexicon.id(w)) is not None]
        co = self.lexicon.co_counts(cands, ctx)
        order = [int(j) for j in co.argsort()[::-1][:MAX_SUGGESTIONS] if co[int(j)] > 0]
        words = " ".join(head)
        return [f"{words} {self.lexicon.terms[int(cands[j])]}".strip() for j in order]

    def suggest(self, query: str, k: int = MAX_SUGGESTIONS) -> list[Suggestion]:
        words = analyze(query)
        if not words or k < 1:
            return []
        open_end = not query[-1:].isspace()
        found: dict[str, Suggestion] = {}
        typed = raw_tokens(query)
        prefixes, head = self._prefixes(words, open_end, typed[-1] if len(typed) == len(words) else "")
        for prefix in prefixes:
            for i in self._top(prefix, 2 * k):
                text = self._keys[i]
                if text not in found:
                    found[text] = Suggestion(
                        self._spelled(text),
                        int(self._count[i]),
                        self._source[i],
                        round(float(self._score[i]), 4),
                    )
        if len(found) < k:  # too few phrases: the typed words with the likeliest completions
            for text in self._composed(head, prefixes[0].split()[-1] if prefixes else words[-1], open_end):
                n = self.products(text)
                if text not in found and n > 0:
                    found[text] = Suggestion(self._spelled(text), n, "catalog", round(math.log1p(n) - 1.0, 4))
        ranked = sorted(found.values(), key=lambda s: (-s.score, len(s.text), s.text))
        out: list[Suggestion] = []
        for sug in ranked:  # two stems spelled alike ("case", "cases") are one suggestion
            if all(o.text != sug.text for o in out):
                out.append(sug)
        return out[:k]


def suggester_of(
    lexicon: Lexicon,
    naming: Iterable[Sequence[str]],
    extra: Iterable[str] = (),
    queries: Mapping[str, int] | None = None,
) -> Suggester:
    return Suggester(lexicon, catalog_phrases(naming, extra), queries)
