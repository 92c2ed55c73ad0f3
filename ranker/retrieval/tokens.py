"""The analyzed text of a segment's rows, held compactly: one term-id array per field.

A list of term strings per field and row (what :func:`~ranker.retrieval.segments.analyze_product`
returns) costs about 4.4 kB a product in Python objects — 4.4 GB at a million products, more
than everything else the backend holds. A :class:`TokenTable` keeps the same text as one ``int32``
term id per token and one offset per row and field (about 0.3 kB a product), with the vocabulary
once. It is what BM25 is built from (:meth:`flat`), what a merge carries into the next base
(:meth:`take`, :meth:`extended`) and what a write is compared with (:meth:`terms`).

The combined field is not stored: its tokens are its sources' tokens (``COMBINED_SOURCES``), in
that order, and are put together when asked for.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from indexer.schema import COMBINED_FIELD, COMBINED_SOURCES, TEXT_FIELDS

Terms = dict[str, list[str]]


class TokenTable:
    """The analyzed text fields of ``n`` rows: per field, term ids (``ids[f]``) and row offsets
    (``offsets[f]``, ``n + 1`` of them); ``words[j]`` is term ``j``. Never changed once built."""

    def __init__(
        self,
        words: Sequence[str],
        ids: Mapping[str, np.ndarray],
        offsets: Mapping[str, np.ndarray],
        n: int,
    ):
        self.words = list(words)
        self.vocab = {w: j for j, w in enumerate(self.words)}
        self.ids = dict(ids)
        self.offsets = dict(offsets)
        self.n = n

    @classmethod
    def of(cls, docs: Iterable[Mapping[str, Sequence[str]]]) -> TokenTable:
        """The table of ``docs`` (field → terms per row; the combined field, if given, is ignored:
        it is rebuilt from its sources). ``docs`` is read once, so it may be a generator: the
        rows' term lists need never be held all at once."""
        return cls.encoded(docs, [], {})

    @classmethod
    def encoded(
        cls, docs: Iterable[Mapping[str, Sequence[str]]], words: Sequence[str], vocab: Mapping[str, int]
    ) -> TokenTable:
        """``docs`` encoded with vocabulary ``words`` (``vocab`` its index), extended by new terms."""
        words, vocab = list(words), dict(vocab)
        ids = {f: array("i") for f in TEXT_FIELDS}
        lengths = {f: array("q") for f in TEXT_FIELDS}
        n = 0
        for d in docs:
            n += 1
            for f in TEXT_FIELDS:
                terms = d.get(f, ())
                ids[f].extend([vocab.setdefault(t, len(vocab)) for t in terms])
                lengths[f].append(len(terms))
        words.extend(sorted(vocab, key=vocab.__getitem__)[len(words) :])
        offsets = {
            f: np.concatenate([[0], np.cumsum(np.frombuffer(lengths[f], np.int64))]) for f in TEXT_FIELDS
        }
        flat = {f: np.frombuffer(ids[f], np.int32).copy() for f in TEXT_FIELDS}
        return cls(words, flat, {f: o.astype(np.int64) for f, o in offsets.items()}, n)

    def __len__(self) -> int:
        return self.n

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (*self.ids.values(), *self.offsets.values()))

    def lengths(self, field: str) -> np.ndarray:
        """Tokens of ``field`` per row."""
        if field == COMBINED_FIELD:
            return sum((np.diff(self.offsets[f]) for f in COMBINED_SOURCES), np.zeros(self.n, np.int64))
        return np.diff(self.offsets[field])

    def flat(self, field: str) -> tuple[np.ndarray, np.ndarray]:
        """(term id of every token of ``field``, row after row; tokens per row): what BM25 counts."""
        if field not in self.ids and field != COMBINED_FIELD:
            return np.zeros(0, np.int32), np.zeros(self.n, np.int64)
        if field != COMBINED_FIELD:
            return self.ids[field], self.lengths(field)
        rows = np.concatenate(
            [np.repeat(np.arange(self.n), np.diff(self.offsets[f])) for f in COMBINED_SOURCES]
        )
        order = np.argsort(rows, kind="stable")  # each row's tokens, its sources in order
        return np.concatenate([self.ids[f] for f in COMBINED_SOURCES])[order], self.lengths(field)

    def terms(self, i: int) -> Terms:
        """Row ``i``'s analyzed text as :func:`~ranker.retrieval.segments.analyze_product` gives it
        (fields without tokens left out; the combined field always there)."""
        out: Terms = {}
        for f in TEXT_FIELDS:
            a, b = self.offsets[f][i], self.offsets[f][i + 1]
            if b > a:
                out[f] = [self.words[j] for j in self.ids[f][a:b].tolist()]
        out[COMBINED_FIELD] = [t for f in COMBINED_SOURCES for t in out.get(f, ())]
        return out

    def same(self, i: int, terms: Mapping[str, Sequence[str]]) -> bool:
        """Whether row ``i`` holds exactly ``terms`` (a field without tokens = a field left out)."""
        mine = self.terms(i)
        return all(list(terms.get(f, ())) == mine.get(f, []) for f in TEXT_FIELDS)

    def take(self, rows: np.ndarray) -> TokenTable:
        """Rows ``rows`` (in that order), the vocabulary kept: O(their tokens), vectorised."""
        rows = np.asarray(rows, dtype=np.int64)
        ids: dict[str, np.ndarray] = {}
        offsets: dict[str, np.ndarray] = {}
        for f in TEXT_FIELDS:
            off = self.offsets[f]
            start, lengths = off[rows], off[rows + 1] - off[rows]
            offsets[f] = np.concatenate([[0], np.cumsum(lengths)])
            # every kept token's position: its row's start plus its place within the row
            within = np.arange(int(offsets[f][-1])) - np.repeat(offsets[f][:-1], lengths)
            ids[f] = self.ids[f][np.repeat(start, lengths) + within]
        return TokenTable(self.words, ids, offsets, len(rows))

    def extended(self, docs: Sequence[Mapping[str, Sequence[str]]]) -> TokenTable:
        """This table with ``docs`` appended after its rows (new terms added to the vocabulary)."""
        more = TokenTable.encoded(docs, self.words, self.vocab)
        ids = {f: np.concatenate([self.ids[f], more.ids[f]]) for f in TEXT_FIELDS}
        offsets = {
            f: np.concatenate([self.offsets[f], more.offsets[f][1:] + self.offsets[f][-1]])
            for f in TEXT_FIELDS
        }
        return TokenTable(more.words, ids, offsets, self.n + more.n)

    def compacted(self) -> TokenTable:
        """The same rows with the vocabulary cut to the terms they hold (after a merge drops rows)."""
        used = np.unique(np.concatenate([self.ids[f] for f in TEXT_FIELDS] or [np.zeros(0, np.int32)]))
        if len(used) == len(self.words):
            return self
        remap = np.full(len(self.words), -1, dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        words = [self.words[j] for j in used.tolist()]
        return TokenTable(words, {f: remap[self.ids[f]] for f in TEXT_FIELDS}, self.offsets, self.n)
