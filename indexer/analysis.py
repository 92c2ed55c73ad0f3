"""Text analysis shared by both backends so that BM25 behaves the same on each.

The chain mirrors the OpenSearch analyzers in :mod:`indexer.opensearch.mapping`:
standard-like tokenization → lowercase → ASCII folding → English possessive removal →
Lucene's ``minimal_english`` stemmer (plural folding only) → (query side only: synonyms, whose
rules go through the same chain, so "laptops" matches the rule "laptop, notebook").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources

ANALYZER_VERSION = 1
# Letters/digits runs; a dot or comma between digits stays inside the token (43.2, 1,000).
# Like Lucene's StandardTokenizer (Unicode word boundaries): an apostrophe or dot between two
# letters stays inside the token (de'longhi, e.g), a dot, comma or apostrophe between two digits
# too (43.2, 1,000); a letter-dot-digit boundary splits (cat.5e → cat, 5e), hyphens split,
# underscores join (iso_iec_19752), and the pictographic symbols ® ™ © are tokens of their own.
_TOKEN = re.compile(
    r"\w+(?:(?:(?<=[^\W\d_])['.](?=[^\W\d_])|(?<=\d)[.,'](?=\d))\w+)*|[\u00ae\u2122\u00a9]",
    re.UNICODE,
)


def fold(text: str) -> str:
    """Lowercase and fold accents to ASCII where a base letter exists (like asciifolding).

    Canonical decomposition only (NFD): ™ stays ™ and ² is dropped as a non-word character, the
    way Lucene's tokenizer treats them.
    """
    if text.isascii():  # nothing to decompose, fold or drop: the common case, 20× faster
        return text.lower()
    decomposed = unicodedata.normalize("NFD", text.lower()).translate(_FOLD)
    return "".join(
        " " if unicodedata.category(c) == "No" else c for c in decomposed if not unicodedata.combining(c)
    )


# Letters asciifolding maps that have no canonical decomposition.
_FOLD = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "đ": "d", "ł": "l", "þ": "th", "ð": "d", "ı": "i", "ħ": "h"}
)


def _possessive(tok: str) -> str:
    return tok[:-2] if tok.endswith(("'s", "\u2019s")) else tok


def minimal_english_stem(tok: str) -> str:
    """Port of Lucene's EnglishMinimalStemmer (the ``minimal_english`` stemmer)."""
    n = len(tok)
    if n < 3 or tok[-1] != "s":
        return tok
    c = tok[-2]
    if c in ("u", "s"):
        return tok
    if c == "e":
        if n > 3 and tok[-3] == "i" and tok[-4] not in ("a", "e"):
            return tok[:-3] + "y"
        if tok[-3] in ("i", "a", "o", "e"):
            return tok
    return tok[:-1]


def raw_tokens(text: str) -> list[str]:
    """Tokens before stemming."""
    text = fold(text).replace("\u2019", "'")
    return [_possessive(m.group(0)) for m in _TOKEN.finditer(text) if m.group(0).strip("_")]


def token_spans(text: str) -> tuple[str, list[tuple[int, int, str]]]:
    """The folded text and each raw token's ``(start, end, token)`` in it (as :func:`raw_tokens`)."""
    folded = fold(text).replace("\u2019", "'")
    spans = [
        (m.start(), m.end(), _possessive(m.group(0)))
        for m in _TOKEN.finditer(folded)
        if m.group(0).strip("_")
    ]
    return folded, spans


def analyze(text: str) -> list[str]:
    """Index-time analysis: the terms a document field contributes."""
    return [minimal_english_stem(t) for t in raw_tokens(text)]


class Synonyms:
    """Equivalence groups; ``expand`` adds every equivalent phrase's terms to a query."""

    def __init__(self, groups: Iterable[Sequence[str]]):
        self.groups: list[list[tuple[str, ...]]] = []
        self._lines: list[str] = []
        for g in groups:
            phrases = [tuple(analyze(p)) for p in g]
            phrases = [p for p in phrases if p]
            if len(phrases) > 1:
                self.groups.append(phrases)
                self._lines.append(", ".join(p.strip().lower() for p in g))

    @classmethod
    def parse(cls, text: str) -> Synonyms:
        groups = []
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line and "=>" not in line:
                groups.append([p.strip() for p in line.split(",") if p.strip()])
        return cls(groups)

    @classmethod
    @lru_cache(maxsize=1)
    def default(cls) -> Synonyms:
        return cls.parse(default_synonym_text())

    def rules(self) -> list[str]:
        """The groups as Solr-format lines (for the OpenSearch synonym_graph filter)."""
        return list(self._lines)

    def expand(self, tokens: Sequence[str]) -> list[str]:
        """Return the tokens plus the tokens of every phrase equivalent to a phrase in them."""
        out = list(tokens)
        for group in self.groups:
            if any(_contains(tokens, p) for p in group):
                for p in group:
                    if not _contains(tokens, p):
                        out.extend(p)
        return out


def _contains(tokens: Sequence[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1))


def default_synonym_text() -> str:
    return resources.files("indexer").joinpath("resources/synonyms.txt").read_text(encoding="utf-8")


def analyze_query(text: str, synonyms: Synonyms | None = None) -> list[str]:
    """Query-time analysis: the index-time chain, then synonym expansion."""
    toks = analyze(text)
    return synonyms.expand(toks) if synonyms is not None else toks
