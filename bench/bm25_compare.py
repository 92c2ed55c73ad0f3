"""BM25 side measurements: the "plain" rank-bm25 baseline and the implementation comparison.

Section 4 of the foundation benchmark: on one analyzed field (title + brand + description through
:func:`indexer.analysis.analyze`), time index build and query (scores + top 100) of our sparse-matrix
:class:`ranker.retrieval.bm25.BM25Index`, ``rank_bm25.BM25Okapi`` and ``bm25s`` (when it imports), and check
that ours with ``idf="okapi", k1=1.5`` ranks like rank-bm25 (top-10 overlap, largest score gap).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm

from indexer.analysis import analyze
from indexer.product import Product
from ranker.evaluation.relevance import Qrels, compute_metrics
from ranker.retrieval.bm25 import BM25Index, BM25Params

DEPTH = 100
K1, B = 1.5, 0.75  # rank-bm25's and bm25s's defaults; every implementation here uses them
_PLAIN_TOKEN = re.compile(r"\w+", re.UNICODE)


def plain_text(p: Product) -> str:
    return f"{p.title} {p.brand} {p.description}"


def plain_tokens(text: str) -> list[str]:
    """The "plain" tokenization of the issue's baseline: lowercase, regex word runs, nothing else."""
    return _PLAIN_TOKEN.findall(text.lower())


def top_k(scores: np.ndarray, k: int = DEPTH) -> list[int]:
    """Indices of the k best positive scores, best first (ties by index, so the order is stable)."""
    cand = np.flatnonzero(scores > 0)
    if cand.size > k:
        cand = cand[np.argpartition(-scores[cand], k - 1)[:k]]
    return sorted(cand.tolist(), key=lambda i: (-float(scores[i]), i))


class PlainBM25:
    """rank-bm25 BM25Okapi over plain-tokenized title + brand + description (the issue's baseline)."""

    def __init__(self, products: Sequence[Product]):
        from rank_bm25 import BM25Okapi

        self.ids = [p.id for p in products]
        t = time.perf_counter()
        self.bm25 = BM25Okapi([plain_tokens(plain_text(p)) for p in products])
        self.build_s = time.perf_counter() - t

    def search(self, query: str, k: int = DEPTH) -> list[tuple[str, float]]:
        scores = np.asarray(self.bm25.get_scores(plain_tokens(query)))
        return [(self.ids[i], float(scores[i])) for i in top_k(scores, k)]


def _impls(
    corpus: list[list[str]], scorers: dict[str, Callable[[list[str]], np.ndarray]]
) -> dict[str, tuple[float, Callable[[list[str]], tuple[list[int], np.ndarray | None]]]]:
    """name → (build seconds, query fn returning (top-100 indices, full score vector or None)).

    ``scorers`` receives an untimed full-score function for implementations whose timed query
    path only returns the top k (bm25s), for the agreement check.
    """
    out = {}
    n = len(corpus)
    for idf in ("lucene", "okapi"):
        t = time.perf_counter()
        ours = BM25Index([{"text": d} for d in corpus], {"text": 1.0}, BM25Params(k1=K1, b=B, idf=idf))
        build = time.perf_counter() - t

        def q_ours(toks: list[str], ix: BM25Index = ours) -> tuple[list[int], np.ndarray]:
            s = ix.scores(toks)
            return top_k(s), s

        out[f"ours ({idf} idf)"] = (build, q_ours)

    from rank_bm25 import BM25Okapi

    t = time.perf_counter()
    rb = BM25Okapi(corpus, k1=K1, b=B)
    build = time.perf_counter() - t

    def q_rank(toks: list[str]) -> tuple[list[int], np.ndarray]:
        s = np.asarray(rb.get_scores(toks))
        return top_k(s), s

    out["rank_bm25 BM25Okapi"] = (build, q_rank)
    try:
        import bm25s
    except ImportError:
        return out
    t = time.perf_counter()
    bs = bm25s.BM25(method="lucene", k1=K1, b=B)
    bs.index(corpus, show_progress=False)
    build = time.perf_counter() - t
    k = min(DEPTH, n)

    def q_bm25s(toks: list[str]) -> tuple[list[int], None]:
        docs, scores = bs.retrieve([toks], k=k, show_progress=False, n_threads=0, return_as="tuple")
        return [int(d) for d, s in zip(docs[0], scores[0], strict=True) if s > 0], None

    out[f"bm25s {bm25s.__version__} (lucene)"] = (build, q_bm25s)
    scorers["bm25s"] = lambda toks: np.asarray(bs.get_scores(toks), dtype=np.float64)
    return out


def compare_bm25(
    products: Sequence[Product], qrels: Qrels, repeat: int, hw: str, progress: bool = True
) -> dict:
    """Section 4: build time, query p50/p95 and quality per implementation, plus agreement checks."""
    ids = [p.id for p in products]
    t = time.perf_counter()
    corpus = [analyze(plain_text(p)) for p in products]
    analyze_s = time.perf_counter() - t
    queries = sorted(qrels)
    qtoks = {q: analyze(q) for q in queries}
    rows = {}
    tops: dict[str, dict[str, list[int]]] = {}
    full: dict[str, dict[str, np.ndarray]] = {}
    scorers: dict[str, Callable[[list[str]], np.ndarray]] = {}
    for name, (build_s, fn) in _impls(corpus, scorers).items():
        for q in queries[:10]:  # warm-up
            fn(qtoks[q])
        lat, tops[name], full[name] = [], {}, {}
        it = [(r, q) for r in range(repeat) for q in queries]
        for r, q in tqdm(it, desc=f"bm25 {name}", unit="q", disable=not progress, leave=False):
            t = time.perf_counter()
            top, scores = fn(qtoks[q])
            lat.append((time.perf_counter() - t) * 1000.0)
            if r == 0:
                tops[name][q] = top
                if scores is None and name.startswith("bm25s"):
                    scores = scorers["bm25s"](qtoks[q])  # untimed: only for the agreement check
                if scores is not None:
                    full[name][q] = scores
        run = {q: {ids[i]: float(DEPTH - j) for j, i in enumerate(tops[name][q])} for q in queries}
        m = compute_metrics(run, qrels)
        rows[name] = {
            "build_s": round(build_s, 3),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 3),
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 3),
            "ndcg@10": round(m["ndcg@10"], 4),
            "recall@100": round(m["recall@100"], 4),
            "queries": len(lat),
            "measured_on": hw,
        }
    agree = [_agreement(tops, full, "ours (okapi idf)", "rank_bm25 BM25Okapi", queries)]
    bname = next((n for n in tops if n.startswith("bm25s")), None)
    if bname:
        # Lucene (and bm25s "lucene") drop BM25's constant (k1 + 1) numerator factor: compare ours ÷ (k1 + 1)
        agree.append(_agreement(tops, full, "ours (lucene idf)", bname, queries, scale_a=1.0 / (K1 + 1)))
    return {
        "corpus": "title + brand + description, one field, indexer.analysis.analyze",
        "params": {"k1": K1, "b": B, "depth": DEPTH},
        "documents": len(products),
        "analyze_s": round(analyze_s, 3),
        "implementations": rows,
        "agreement": agree,
        "measured_on": hw,
    }


def _agreement(tops: dict, full: dict, a: str, b: str, queries: list[str], scale_a: float = 1.0) -> dict:
    overlaps = []
    for q in queries:
        ta, tb = tops[a][q][:10], tops[b][q][:10]
        if ta or tb:
            overlaps.append(len(set(ta) & set(tb)) / max(len(ta), len(tb)))
    gap = None
    if full.get(a) and full.get(b):
        gap = max(float(np.max(np.abs(scale_a * full[a][q] - full[b][q]))) for q in queries)
    return {
        "a": a,
        "b": b,
        "top10_overlap_mean": round(float(np.mean(overlaps)), 4) if overlaps else None,
        "top10_identical_queries": sum(1 for q in queries if tops[a][q][:10] == tops[b][q][:10]),
        "queries": len(queries),
        "max_abs_score_diff": None if gap is None else float(f"{gap:.3g}"),
        "score_scale_a": scale_a,
    }
