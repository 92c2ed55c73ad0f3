"""The bi-encoder on torch vs its ONNX exports (fp32, int8): ranking cost and speed.

The embedded index (built by ``scripts/run`` with the torch model) stays as it is; each runtime
embeds the 100 dev queries, and ``vector`` and ``hybrid`` are evaluated on the judgments — the
serving situation, where only queries are embedded at request time. Speed: single-query
embedding latency (p50/p95 over the dev queries, 3 rounds after a warm-up) and document
throughput (texts/s, 2,000 catalog texts, batch 64). Needs ``shoprank export --embedder``.
Writes ``OUT/embedder_onnx.json`` and ``OUT/embedder_onnx.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.report import table
from indexer.embedded.store import EmbeddedStore
from plugin_api.backends import embedder_from, retrieval_config
from plugin_api.settings import Settings
from ranker.base import Mode, SearchRequest
from ranker.evaluation.relevance import RUN_DEPTH, evaluate_pipelines, load_judgments, machine_description
from ranker.retrieval.embedded import EmbeddedBackend
from ranker.retrieval.retriever import Retriever

REPO = Path(__file__).resolve().parents[1]
JUDGMENTS = REPO.parent / "shared" / "data" / "chorus_icecat" / "judgments_dev.csv"
RUNTIMES = ("minilm", "minilm-onnx", "minilm-onnx-int8")
METRICS = ("ndcg@10", "ndcg_condensed@10", "recall@100")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtimes", default=",".join(RUNTIMES))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "embedder_onnx")
    args = ap.parse_args(argv)
    qrels = load_judgments(JUDGMENTS)
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
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "index": str(base.embedded_dir),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embedder_onnx.json").write_text(json.dumps(report, indent=2) + "\n")
    cols = [
        "vector ndcg@10",
        "hybrid ndcg@10",
        "hybrid ndcg_condensed@10",
        "query p50 ms",
        "query p95 ms",
        "docs/s",
        "min cosine to torch",
    ]
    lines = [
        "# Bi-encoder runtimes: torch vs ONNX fp32 vs ONNX int8 (queries only; the index is the torch one)",
        "",
        f"- date: {report['date']}; machine: {report['machine']}",
        "- 100 dev queries, unjudged = 0; document throughput on 2,000 catalog texts, batch 64",
        "",
        *table(["runtime", *cols], [[n, *(r[c] for c in cols)] for n, r in rows.items()], 4),
    ]
    (args.out / "embedder_onnx.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
