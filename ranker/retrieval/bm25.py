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
from ranker.retrieval.tokens import TokenTable


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

    :meth:`document_scores` scores one more document against the index's statistics, without
    rebuilding it (the embedded backend's delta segment).
    """

    def __init__(
        self,
        docs: Sequence[Mapping[str, Sequence[str]]],
        boosts: Mapping[str, float],
        params: BM25Params | None = None,
    ):
        vocab: dict[str, int] = {}
        flat: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # field → (term id per token, doc lengths)
        for f in boosts:
            lengths = np.fromiter((len(d.get(f, ())) for d in docs), dtype=np.int64, count=len(docs))
            tokens = [t for d in docs for t in d.get(f, ())]
            ids = np.fromiter(
                (vocab.setdefault(t, len(vocab)) for t in tokens), dtype=np.int64, count=len(tokens)
            )
            flat[f] = (ids, lengths)
        self._build(len(docs), vocab, flat, boosts, params)

    @classmethod
    def of_tokens(
        cls, table: TokenTable, boosts: Mapping[str, float], params: BM25Params | None = None
    ) -> BM25Index:
        """The index of a segment's :class:`~ranker.retrieval.tokens.TokenTable` (its vocabulary
        shared, not copied): the same scores as built from the terms themselves."""
        self = cls.__new__(cls)
        self._build(len(table), table.vocab, {f: table.flat(f) for f in boosts}, boosts, params)
        return self

    def _build(
        self,
        n_docs: int,
        vocab: dict[str, int],
        flat: Mapping[str, tuple[np.ndarray, np.ndarray]],
        boosts: Mapping[str, float],
        params: BM25Params | None,
    ) -> None:
        self.params = params or BM25Params()
        self.boosts = dict(boosts)
        self.n_docs = n_docs
        self.df: dict[str, np.ndarray] = {}  # per field, aligned with ``vocab``
        self.total_length: dict[str, float] = {}
        self.mean_idf: dict[str, float] = {}  # okapi's floor of negative idf
        self.vocab = vocab
        total = None
        for f, boost in self.boosts.items():
            if boost == 0:
                continue
            m = self._field_matrix(f, *flat[f], boost)
            total = m if total is None else total + m
        if total is None:
            total = sparse.csr_matrix((self.n_docs, len(vocab)), dtype=np.float32)
        self.matrix = sparse.csc_matrix(total, dtype=np.float32)

    def _field_matrix(
        self, name: str, term_ids: np.ndarray, lengths: np.ndarray, boost: float
    ) -> sparse.csr_matrix:
        """One field's BM25 contributions; ``term_ids`` are its tokens, document after document
        (``lengths`` tokens each). Term frequencies are counted with numpy, not per document."""
        p = self.params
        n, v = self.n_docs, len(self.vocab)
        doc = np.repeat(np.arange(n, dtype=np.int64), lengths)
        pairs, tf_counts = np.unique(doc * max(v, 1) + term_ids, return_counts=True)
        ri, ci = pairs // max(v, 1), pairs % max(v, 1)
        df = np.bincount(ci, minlength=v).astype(np.float64)
        total = float(lengths.sum())
        self.df[name] = df
        self.total_length[name] = total
        avgdl = total / n if n and total > 0 else 1.0
        idf = self._idf(df, n, name)
        tf = tf_counts.astype(np.float64)
        denom = tf + p.k1 * (1 - p.b + p.b * lengths[ri].astype(np.float64) / avgdl)
        vals = boost * idf[ci] * tf * (p.k1 + 1) / denom
        return sparse.csr_matrix((vals, (ri, ci)), shape=(n, v))

    def _idf(self, df: np.ndarray, n: int, name: str) -> np.ndarray:
        """idf per term of field ``name`` (okapi: its mean is recorded for documents scored later)."""
        present = df > 0
        idf = np.zeros_like(df)
        if self.params.idf == "lucene":
            idf[present] = np.log1p((n - df[present] + 0.5) / (df[present] + 0.5))
            return idf
        # rank-bm25 BM25Okapi: ln(N - n + 0.5) - ln(n + 0.5); negatives floored at eps * mean idf
        # (mean over the field's vocabulary).
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = np.log(n - df[present] + 0.5) - np.log(df[present] + 0.5)
        mean = float(raw.mean()) if raw.size else 0.0
        self.mean_idf[name] = mean
        raw = np.where(raw < 0, self.params.epsilon * mean, raw)
        idf[present] = raw
        return idf

    def document_scores(self, doc: Mapping[str, Sequence[str]]) -> dict[str, float]:
        """Term → BM25 contribution of ``doc`` (summed over the boosted fields) as if it were one
        more document of this index: N, its terms' document frequencies and the fields' total
        length count it too. With Lucene's idf it scores what it would in an index built with it
        (okapi's floor keeps the index's mean idf)."""
        p = self.params
        n = self.n_docs + 1
        out: dict[str, float] = {}
        for f, boost in self.boosts.items():
            terms = doc.get(f, ())
            if boost == 0 or not terms:
                continue
            df_f = self.df.get(f)
            avgdl = (self.total_length.get(f, 0.0) + len(terms)) / n
            norm = p.k1 * (1 - p.b + p.b * len(terms) / avgdl)
            counts = Counter(terms)
            df = np.asarray(
                [
                    1.0 + (df_f[j] if df_f is not None and (j := self.vocab.get(t)) is not None else 0.0)
                    for t in counts
                ],
                dtype=np.float64,
            )
            if p.idf == "lucene":
                idf = np.log1p((n - df + 0.5) / (df + 0.5))
            else:
                idf = np.log(n - df + 0.5) - np.log(df + 0.5)
                idf = np.where(idf < 0, p.epsilon * self.mean_idf.get(f, 0.0), idf)
            tf = np.asarray(list(counts.values()), dtype=np.float64)
            vals = boost * idf * tf * (p.k1 + 1) / (tf + norm)
            for t, v in zip(counts, vals.tolist(), strict=True):
                out[t] = out.get(t, 0.0) + v
        return out

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
        self.fields: tuple[str, ...] = tuple(fields)
        self.n_docs = len(docs)
        self._per_field: list[BM25Index] = [BM25Index(docs, {f: 1.0}, params) for f in self.fields]

    @classmethod
    def of_tokens(
        cls, table: TokenTable, fields: Sequence[str], params: BM25Params | None = None
    ) -> BestFieldBM25:
        """The strict leg over a :class:`~ranker.retrieval.tokens.TokenTable` (one shared vocabulary)."""
        if not fields:
            raise BadInputError("the strict keyword match needs at least one field")
        self = cls.__new__(cls)
        self.fields = tuple(fields)
        self.n_docs = len(table)
        self._per_field = [BM25Index.of_tokens(table, {f: 1.0}, params) for f in self.fields]
        return self

    def document_scores(self, doc: Mapping[str, Sequence[str]]) -> dict[str, float]:
        """Term → best-field score of ``doc`` as one more document of this index (see
        :meth:`BM25Index.document_scores`); a term the doc holds in no field is absent."""
        best: dict[str, float] = {}
        for idx in self._per_field:
            for t, v in idx.document_scores(doc).items():
                if v > best.get(t, 0.0):
                    best[t] = v
        return best

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
                if j is not None:  # the column's stored entries (CSC), not a dense copy of it
                    m = idx.matrix
                    a, b = m.indptr[j], m.indptr[j + 1]
                    rows = m.indices[a:b]
                    best[rows] = np.maximum(best[rows], m.data[a:b].astype(np.float64))
            total += best
            match &= best > 0
        return total, match
