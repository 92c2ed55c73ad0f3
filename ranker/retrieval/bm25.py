"""BM25 over several weighted fields, as one sparse matrix (documents × terms).

Scores are precomputed per (document, term): ``sum_f boost_f · idf_f(t) · tf·(k1+1) / (tf + k1·(1-b+b·dl/avgdl))``,
so a query is a sum of a few sparse columns. ``idf="lucene"`` uses Lucene's always-positive
``log(1 + (N-n+0.5)/(n+0.5))``; ``idf="okapi"`` reproduces rank-bm25's BM25Okapi (negative idf
floored at ``epsilon`` × mean idf) — the test suite checks both against rank-bm25.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from indexer.errors import BadInputError


@dataclass(frozen=True)
class BM25Params:
    k1: float = 1.2
    b: float = 0.75
    idf: str = "lucene"
    epsilon: float = 0.25

    def __post_init__(self) -> None:
        if self.idf not in ("lucene", "okapi"):
            raise BadInputError(f"unknown idf {self.idf!r}; choose from lucene, okapi")
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise BadInputError("BM25 needs k1 >= 0 and 0 <= b <= 1")


class BM25Index:
    """Multi-field BM25 over pre-analyzed documents.

    ``docs`` is one mapping per document: field name → list of terms. ``boosts`` weights fields.
    """

    def __init__(
        self,
        docs: Sequence[Mapping[str, Sequence[str]]],
        boosts: Mapping[str, float],
        params: BM25Params | None = None,
    ):
        self.params = params or BM25Params()
        self.boosts = dict(boosts)
        self.n_docs = len(docs)
        vocab: dict[str, int] = {}
        for d in docs:
            for f in self.boosts:
                for t in d.get(f, ()):
                    if t not in vocab:
                        vocab[t] = len(vocab)
        self.vocab = vocab
        total = None
        for f, boost in self.boosts.items():
            if boost == 0:
                continue
            m = self._field_matrix([d.get(f, ()) for d in docs], boost)
            total = m if total is None else total + m
        if total is None:
            total = sparse.csr_matrix((self.n_docs, len(vocab)), dtype=np.float32)
        self.matrix = sparse.csc_matrix(total, dtype=np.float32)

    def _field_matrix(self, field_docs: Sequence[Sequence[str]], boost: float) -> sparse.csr_matrix:
        p = self.params
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[float] = []
        lengths = np.zeros(self.n_docs, dtype=np.float64)
        df = np.zeros(len(self.vocab), dtype=np.float64)
        for i, terms in enumerate(field_docs):
            lengths[i] = len(terms)
            for t, c in Counter(terms).items():
                j = self.vocab[t]
                rows.append(i)
                cols.append(j)
                tfs.append(c)
                df[j] += 1
        n = self.n_docs
        avgdl = lengths.mean() if n and lengths.sum() > 0 else 1.0
        idf = self._idf(df, n)
        ri = np.asarray(rows, dtype=np.int64)
        ci = np.asarray(cols, dtype=np.int64)
        tf = np.asarray(tfs, dtype=np.float64)
        denom = tf + p.k1 * (1 - p.b + p.b * lengths[ri] / avgdl)
        vals = boost * idf[ci] * tf * (p.k1 + 1) / denom
        return sparse.csr_matrix((vals, (ri, ci)), shape=(n, len(self.vocab)))

    def _idf(self, df: np.ndarray, n: int) -> np.ndarray:
        present = df > 0
        idf = np.zeros_like(df)
        if self.params.idf == "lucene":
            idf[present] = np.log1p((n - df[present] + 0.5) / (df[present] + 0.5))
            return idf
        # rank-bm25 BM25Okapi: ln(N - n + 0.5) - ln(n + 0.5); negatives floored at eps * mean idf
        # (mean over the field's vocabulary).
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = np.log(n - df[present] + 0.5) - np.log(df[present] + 0.5)
        mean = raw.mean() if raw.size else 0.0
        raw = np.where(raw < 0, self.params.epsilon * mean, raw)
        idf[present] = raw
        return idf

    def term_ids(self, terms: Sequence[str]) -> list[int]:
        """Column ids of the known terms, duplicates kept (a repeated query term counts again)."""
        return [self.vocab[t] for t in terms if t in self.vocab]

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for the query terms (0 for documents matching none)."""
        cols = self.term_ids(terms)
        if not cols:
            return np.zeros(self.n_docs, dtype=np.float32)
        counts = Counter(cols)
        uniq = list(counts)
        sub = self.matrix[:, uniq]
        weights = np.asarray([counts[c] for c in uniq], dtype=np.float32)
        return np.asarray(sub @ weights, dtype=np.float32).ravel()

    def matches(self, terms: Sequence[str]) -> np.ndarray:
        """Boolean mask of documents containing at least one query term."""
        cols = list(set(self.term_ids(terms)))
        if not cols:
            return np.zeros(self.n_docs, dtype=bool)
        return np.asarray(self.matrix[:, cols].getnnz(axis=1) > 0).ravel()


class BestFieldBM25:
    """Per-term best-field BM25 with every term required: the classic keyword engine.

    Each field is scored on its own (its own lengths and idf, boost 1). A query term scores the
    best of its fields (a ``dis_max`` with tie-breaker 0, as Solr's edismax or an OpenSearch
    ``dis_max`` per term), the terms' scores add up, and only documents holding *every* term in
    some field match. The OpenSearch backend sends the same query (``strict_lexical_body``).
    """

    def __init__(
        self,
        docs: Sequence[Mapping[str, Sequence[str]]],
        fields: Sequence[str],
        params: BM25Params | None = None,
    ):
        if not fields:
            raise BadInputError("the strict keyword match needs at least one field")
        self.fields = tuple(fields)
        self.n_docs = len(docs)
        self._per_field = [BM25Index(docs, {f: 1.0}, params) for f in self.fields]

    def scores(self, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(score, match) per document: the summed best-field BM25 of the distinct terms, and
        whether the document holds every one of them (no terms: nothing matches)."""
        uniq = list(dict.fromkeys(terms))
        total = np.zeros(self.n_docs, dtype=np.float64)
        match = np.full(self.n_docs, bool(uniq))
        for t in uniq:
            best = np.zeros(self.n_docs, dtype=np.float64)
            for idx in self._per_field:
                j = idx.vocab.get(t)
                if j is not None:
                    col = np.asarray(idx.matrix[:, j].toarray(), dtype=np.float64).ravel()
                    np.maximum(best, col, out=best)
            total += best
            match &= best > 0
        return total, match
