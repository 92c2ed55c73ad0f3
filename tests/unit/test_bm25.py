"""Our sparse BM25 against the reference implementation in rank-bm25."""

import math

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from indexer.analysis import analyze
from indexer.errors import BadInputError
from ranker.retrieval.bm25 import BestFieldBM25, BM25Index, BM25Params

CORPUS = [
    "Lenovo ThinkPad notebook with Intel Core i5",
    "HP notebook PC silver",
    "Samsung smart TV 55 inch QLED",
    "LG OLED television 55 inch",
    "notebook sleeve black 15.6 inch",
    "black ink cartridge for HP printers",
    "wireless mouse black",
    "USB flash drive 64 GB",
    "solid state drive 1 TB NVMe",
    "hard drive 2 TB SATA",
]
QUERIES = ["notebook", "black notebook sleeve", "55 inch tv", "drive", "hp ink", "unknownword", "inch inch"]


class LuceneIdfBM25(BM25Okapi):
    """rank-bm25 with Lucene's idf, log(1 + (N - n + 0.5) / (n + 0.5))."""

    def _calc_idf(self, nd):
        for word, freq in nd.items():
            self.idf[word] = math.log(1 + (self.corpus_size - freq + 0.5) / (freq + 0.5))


@pytest.mark.parametrize(
    "params", [BM25Params(k1=1.5, b=0.75, idf="okapi"), BM25Params(k1=0.9, b=0.4, idf="okapi")]
)
def test_okapi_matches_rank_bm25(params):
    docs = [analyze(t) for t in CORPUS]
    ours = BM25Index([{"text": d} for d in docs], {"text": 1.0}, params)
    ref = BM25Okapi(docs, k1=params.k1, b=params.b, epsilon=params.epsilon)
    for q in QUERIES:
        terms = analyze(q)
        np.testing.assert_allclose(ours.scores(terms), ref.get_scores(terms), rtol=1e-5, atol=1e-6)


def test_lucene_idf_matches_rank_bm25_with_lucene_idf():
    docs = [analyze(t) for t in CORPUS]
    ours = BM25Index([{"text": d} for d in docs], {"text": 1.0}, BM25Params(k1=1.2, b=0.75, idf="lucene"))
    ref = LuceneIdfBM25(docs, k1=1.2, b=0.75)
    for q in QUERIES:
        terms = analyze(q)
        np.testing.assert_allclose(ours.scores(terms), ref.get_scores(terms), rtol=1e-5, atol=1e-6)


def test_fields_are_boosted_sums():
    titles = [analyze(t) for t in CORPUS]
    descs = [analyze(t) for t in reversed(CORPUS)]
    both = BM25Index([{"t": a, "d": b} for a, b in zip(titles, descs, strict=True)], {"t": 3.0, "d": 0.5})
    t = BM25Index([{"t": a} for a in titles], {"t": 1.0})
    d = BM25Index([{"d": b} for b in descs], {"d": 1.0})
    terms = analyze("black notebook")
    np.testing.assert_allclose(both.scores(terms), 3.0 * t.scores(terms) + 0.5 * d.scores(terms), rtol=1e-5)


def test_matches_and_empty_query():
    idx = BM25Index([{"text": analyze(t)} for t in CORPUS], {"text": 1.0})
    assert idx.matches(["notebook"]).tolist() == [True, True, False, False, True] + [False] * 5
    assert not idx.scores(["zzz"]).any()
    assert not idx.matches([]).any()


def test_best_field_bm25_is_a_per_term_dis_max_that_needs_every_term():
    titles = [analyze(t) for t in CORPUS]
    descs = [analyze(t) for t in reversed(CORPUS)]
    docs = [{"t": a, "d": b} for a, b in zip(titles, descs, strict=True)]
    ours = BestFieldBM25(docs, ["t", "d"])
    refs = [LuceneIdfBM25(titles, k1=1.2, b=0.75), LuceneIdfBM25(descs, k1=1.2, b=0.75)]
    for q in QUERIES:
        terms = list(dict.fromkeys(analyze(q)))  # a repeated term counts once
        per_term = [np.maximum(*(r.get_scores([t]) for r in refs)) for t in terms]
        scores, match = ours.scores(analyze(q))
        np.testing.assert_allclose(scores, np.sum(per_term, axis=0), rtol=1e-5, atol=1e-6)
        # a match holds every term in one field or another, never because of one term alone
        has = [[t in set(a) | set(b) for t in terms] for a, b in zip(titles, descs, strict=True)]
        assert match.tolist() == [bool(terms) and all(h) for h in has]
    # The first document says "notebook" in its title and "drive" in its other field: a match.
    _, match = ours.scores(analyze("notebook drive"))
    assert match[0] and not ours.scores([])[1].any()
    with pytest.raises(BadInputError, match="at least one field"):
        BestFieldBM25(docs, [])
