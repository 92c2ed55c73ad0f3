"""Grid over hybrid fusion (RRF k and weights, min-max weights) on the dev judgments.

This is how the default fusion weights in ``ranker/retrieval/retriever.py`` were chosen. It needs a built
embedded index of the full catalog (``shoprank index --catalog ../shared/data/chorus_icecat``) and
writes ``OUT/tune_fusion.json`` + ``.md``. Chosen and scored on the same 100 dev queries (no
held-out set): treat small gaps as noise.
"""

from __future__ import annotations

import sys

from bench.common import Run, add_index, add_judgments, add_out, parser
from bench.grid import write_grid
from indexer.embedded.store import EmbeddedStore
from indexer.embedding.embedders import SentenceTransformerEmbedder
from ranker.base import Filters
from ranker.evaluation.relevance import compute_metrics, load_judgments
from ranker.retrieval.embedded import EmbeddedBackend
from ranker.retrieval.fusion import minmax, rrf
from ranker.retrieval.retriever import DEFAULT_WEIGHTS

TITLE = "Hybrid fusion grid (embedded backend, dev judgments, top-100 lists, bm25 weight 1.0)"
COLUMNS = ["fusion", "rrf_k", "vector_weight"]


def main(argv: list[str] | None = None) -> int:
    ap = parser("tune_fusion", __doc__)
    add_index(ap)
    add_judgments(ap)
    add_out(ap, "tune_fusion")
    args = ap.parse_args(argv)
    this_run = Run.start("tune_fusion", argv, args)
    qrels = load_judgments(args.judgments)
    backend = EmbeddedBackend(EmbeddedStore(args.index))
    queries = sorted(qrels)
    vectors = SentenceTransformerEmbedder(device="cpu").encode(queries)
    lists = {
        q: {"bm25": backend.lexical(q, 100, Filters()), "vector": backend.knn(v, 100, Filters())}
        for q, v in zip(queries, vectors, strict=True)
    }
    grid = [("bm25 only", None, 0, 0.0), ("vector only", None, 0, -1.0)]
    grid += [("rrf", "rrf", k, w) for k in (60, 20) for w in (1.0, 0.7, 0.5, 0.3)]
    grid += [("minmax", "minmax", 0, w) for w in (1.0, 0.7, 0.5, 0.3)]
    rows = []
    for name, kind, k, wv in grid:
        run = {}
        for q in queries:
            if kind is None:
                items = lists[q]["bm25" if wv == 0 else "vector"]
            elif kind == "rrf":
                items = rrf(lists[q], k=k, weights={"bm25": 1.0, "vector": wv})
            else:
                items = minmax(lists[q], weights={"bm25": 1.0, "vector": wv})
            run[q] = {s.id: float(100 - i) for i, s in enumerate(items[:100])}  # rank order, as in eval
        m = compute_metrics(run, qrels)
        default = kind == "rrf" and k == 60 and wv == DEFAULT_WEIGHTS["vector"]
        rows.append(
            {
                "fusion": name,
                "rrf_k": k or None,
                "vector_weight": wv if kind else None,
                "default": default,
                **{key: round(v, 4) for key, v in m.items()},
            }
        )
        print(f"{name:12s} k={k} wv={wv} " + " ".join(f"{a}={v:.4f}" for a, v in m.items()), flush=True)
    write_grid(
        args.out,
        "tune_fusion",
        TITLE,
        backend.count(),
        COLUMNS,
        rows,
        this_run,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
