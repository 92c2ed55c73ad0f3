"""The bi-encoder on torch vs its ONNX exports (fp32, int8): ranking cost and speed.

The embedded index (built by ``scripts/run`` with the torch model) stays as it is; each runtime
embeds the 100 dev queries, and ``vector`` and ``hybrid`` are evaluated on the judgments — the
serving situation, where only queries are embedded at request time. Speed: single-query
embedding latency (p50/p95 over the dev queries, 3 rounds after a warm-up) and document
throughput (texts/s, 2,000 catalog texts, batch 64). Needs ``shoprank export --embedder``.
Merges one row per runtime (with its run's provenance) into ``OUT/embedder_onnx.json``; renders
``OUT/embedder_onnx.md`` from it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from bench.common import Run, RunNotes, Table, add_judgments, add_out, parser, write_results
from bench.report import table
from indexer.embedded.store import EmbeddedStore
from plugin_api.backends import embedder_from, retrieval_config
from plugin_api.settings import Settings
from ranker.base import Mode, SearchRequest
from ranker.evaluation.relevance import RUN_DEPTH, evaluate_pipelines, load_judgments
from ranker.retrieval.embedded import EmbeddedBackend
from ranker.retrieval.retriever import Retriever

RUNTIMES = ("minilm", "minilm-onnx", "minilm-onnx-int8")
METRICS = ("ndcg@10", "ndcg_condensed@10", "recall@100")
COLUMNS = (
    "vector ndcg@10",
    "hybrid ndcg@10",
    "hybrid ndcg_condensed@10",
    "query p50 ms",
    "query p95 ms",
    "docs/s",
    "min cosine to torch",
)


def render(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    rows = [[n, *(r[c] for c in COLUMNS), notes.mark(r)] for n, r in doc["rows"].items()]
    lines = [
        "# Bi-encoder runtimes: torch vs ONNX fp32 vs ONNX int8 (queries only; the index is the torch one)",
        "",
        "- 100 dev queries, unjudged = 0; document throughput on 2,000 catalog texts, batch 64;"
        " `min cosine to torch` compares with the first runtime of the row's run",
        "",
        *table(["runtime", *COLUMNS, "run"], rows, 4),
        *notes.lines(),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser("embedder_onnx", __doc__)
    ap.add_argument("--runtimes", default=",".join(RUNTIMES))
    add_judgments(ap)
    add_out(ap, "embedder_onnx")
    args = ap.parse_args(argv)
    run = Run.start("embedder_onnx", argv, args)
    qrels = load_judgments(args.judgments)
    queries = sorted(qrels)
    base = Settings(device="cpu")
    store = EmbeddedStore(base.embedded_dir)
    backend = EmbeddedBackend(store)
    texts = [p.embedding_text() for p in store.load().products[:2000]]
    rows: dict[str, dict[str, float]] = {}
    reference: np.ndarray | None = None
    for name in args.runtimes.split(","):
        embedder = embedder_from(base.model_copy(update={"embedder": name}))
        retriever = Retriever(backend, embedder, retrieval_config(base))

        def searcher(mode: Mode, r: Retriever = retriever):  # noqa: ANN202
            return lambda query: [
                (h.id, h.score) for h in r.search(SearchRequest(query, k=RUN_DEPTH, mode=mode)).hits
            ]

        embedder.encode(["warm up"])
        results = evaluate_pipelines(
            qrels, {"vector": searcher(Mode.VECTOR), "hybrid": searcher(Mode.HYBRID)}
        )
        lat = []
        for _ in range(3):
            for q in queries:
                t = time.perf_counter()
                embedder.encode([q])
                lat.append((time.perf_counter() - t) * 1000.0)
        t = time.perf_counter()
        docs = embedder.encode(texts, batch_size=64)
        throughput = len(texts) / (time.perf_counter() - t)
        if reference is None:
            reference = docs
        row: dict[str, float] = {
            f"{p} {m}": results[p].metrics[m] for p in ("vector", "hybrid") for m in METRICS
        }
        row |= {
            "query p50 ms": float(np.percentile(lat, 50)),
            "query p95 ms": float(np.percentile(lat, 95)),
            "docs/s": throughput,
            "min cosine to torch": float(np.min(np.sum(docs * reference, axis=1))),
        }
        rows[name] = row
        print(name, json.dumps({k: round(v, 4) for k, v in row.items()}))
    doc = write_results(
        args.out,
        "embedder_onnx",
        [Table([{"runtime": n, **r} for n, r in rows.items()], ("runtime",), keyed=True)],
        run=run,
        extra={"date": run.date, "machine": run.machine, "index": str(base.embedded_dir)},
        markdown=render,
    )
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
