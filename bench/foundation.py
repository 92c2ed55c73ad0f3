"""Foundation benchmark: indexing throughput, query latency, relevance and the BM25 choice.

Run from the repository root (``python -m bench.foundation --help``); bench/README.md explains
each section. Every figure is measured in this run; nothing is hard-coded except the issue's
reference points, which are labelled as quoted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.bm25_compare import DEPTH, PlainBM25, compare_bm25
from bench.common import Run, add_catalog, add_judgments, add_out, add_quiet, parser
from bench.knn_recall import measure_knn_recall
from bench.report import render_markdown
from indexer.catalog import read_catalog
from indexer.embedding.embedders import EmbeddingCache, embed_texts, resolve_device
from indexer.pipeline import build_index
from plugin_api.backends import embedder_from, factory, open_retriever
from plugin_api.settings import Settings
from ranker.base import Mode, Scored, SearchRequest
from ranker.evaluation.relevance import evaluate_pipelines, load_judgments, machine_description
from ranker.retrieval.fusion import rrf
from ranker.retrieval.retriever import Retriever

BENCH_ALIAS = "shoprank-bench"
MODES = (Mode.BM25, Mode.VECTOR, Mode.HYBRID)
# Quoted from the issue (dev judgments, unjudged = 0) — shown beside this run's measured figures.
REFERENCE = {"plain BM25": 0.69, "plain MiniLM vectors": 0.58, "their RRF": 0.72}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = parser("foundation", __doc__)
    add_catalog(ap)
    add_judgments(ap)
    ap.add_argument("--backends", default="embedded,opensearch", help="comma-separated: embedded,opensearch")
    ap.add_argument("--opensearch-url", default="http://127.0.0.1:9200")
    ap.add_argument("--limit", type=int, help="only the first N products (quick runs)")
    add_out(ap, "foundation")
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "shoprank" / "embeddings",
        help="persistent embedding cache (the WARM phase)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="latency repetitions per query")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch-size", type=int, default=64, help="embedding batch size")
    add_quiet(ap)
    args = ap.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = set(args.backends) - {"embedded", "opensearch"}
    if bad:
        ap.error(f"unknown backend(s) {sorted(bad)}; choose from embedded, opensearch")
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    return args


def hw_label(device: str) -> str:
    """Short CPU/GPU name printed beside each figure."""
    if device.startswith("cuda"):
        import torch

        return f"GPU {torch.cuda.get_device_name(0)}"
    cpu = machine_description().split(" × ")[0]
    return f"{cpu} ×{os.cpu_count()}"


def backend_hw(name: str, url: str, hw: str) -> str:
    """Where a backend's figures come from: this process, or this client plus an OpenSearch node."""
    if name != "opensearch":
        return hw
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or url
    local = host in ("127.0.0.1", "localhost", "::1")
    return f"{hw} (client + OpenSearch node on this host)" if local else f"{hw} client, OpenSearch at {host}"


def opensearch_version(url: str) -> str | None:
    from indexer.opensearch.client import make_client

    try:
        return str(make_client(url, timeout=5).info()["version"]["number"])
    except Exception:  # any failure means "not reachable" here
        return None


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


# -- 1. indexing -----------------------------------------------------------------------------------
def measure_embedding(products, embedder, cache_dir: Path, batch_size: int, progress: bool, hw: str) -> dict:
    texts = [p.embedding_text() for p in products]
    t = time.perf_counter()
    embedder.encode(["warm up"])  # model load, kept out of the throughput figures
    load_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="shoprank-bench-cache-") as tmp:
        cold_cache = EmbeddingCache(tmp, embedder.model_id, embedder.dimension)
        t = time.perf_counter()
        vectors, computed = embed_texts(texts, embedder, cold_cache, batch_size=batch_size, progress=progress)
        cold_s = time.perf_counter() - t
    # The warm phase must find every text in the persistent cache; fill any gap with the cold vectors
    # (same model, same texts) so WARM measures a re-index of an unchanged catalog.
    cache = EmbeddingCache(cache_dir, embedder.model_id, embedder.dimension)
    missing = {}
    for i, text in enumerate(texts):
        key = EmbeddingCache.key(text)
        if cache.get(key) is None:
            missing.setdefault(key, i)
    if missing:
        cache.put_many(list(missing), vectors[list(missing.values())])
    return {
        "model_id": embedder.model_id,
        "model_load_s": round(load_s, 3),
        "batch_size": batch_size,
        "cold": {
            "products": len(texts),
            "embedded": computed,
            "seconds": round(cold_s, 3),
            "docs_per_s": round(len(texts) / cold_s, 2),
            "embedded_per_s": round(computed / cold_s, 2),
            "measured_on": hw,
        },
        "persistent_cache": {"dir": str(cache_dir), "primed_from_cold_run": len(missing)},
    }


def index_backend(name: str, s: Settings, products, embedder, cache_dir: Path, args, hw: str) -> dict:
    cache = EmbeddingCache(cache_dir, embedder.model_id, embedder.dimension)
    store = factory(name).store(s)
    rep = build_index(
        products, store, embedder, cache=cache, batch_size=args.batch_size, progress=not args.quiet
    )
    if not rep.write.ok:
        raise SystemExit(f"{name}: build failed: {rep.write.errors[:5]}")
    out = {
        "warm_embed": {
            "products": rep.documents,
            "embedded": rep.embedded,
            "cached": rep.cached,
            "seconds": round(rep.embed_seconds, 3),
            "docs_per_s": round(rep.documents / rep.embed_seconds, 1) if rep.embed_seconds else None,
            "measured_on": hw,
        },
        "write": {
            "documents": rep.documents,
            "seconds": round(rep.write_seconds, 3),
            "docs_per_s": round(rep.write_docs_per_s, 1),
            "what": "versioned folder: products.jsonl + vectors.npy + manifest, pointer switch"
            if name == "embedded"
            else "create index, bulk (chunks of 500) + refresh + count check + alias swap",
            "target": rep.write.target,
            "measured_on": backend_hw(name, s.opensearch_url, hw),
        },
    }
    t = time.perf_counter()
    retriever = open_retriever(s, embedder)
    out["open_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    retriever.search(SearchRequest("warm up", k=1, mode=Mode.BM25, with_products=False))
    out["first_query_s"] = round(time.perf_counter() - t, 3)  # embedded: builds the BM25 matrix lazily
    out["measured_on"] = backend_hw(name, s.opensearch_url, hw)
    return {"report": out, "retriever": retriever}


# -- 2. latency ------------------------------------------------------------------------------------
def measure_latency(
    retrievers: dict[str, Retriever], queries: list[str], repeat: int, progress: bool, where: dict[str, str]
) -> dict:
    """Interleaved: each query goes through every (backend, mode) in turn, so a burst of other load
    on the machine hits all combinations alike instead of skewing whichever section it overlaps."""
    combos = [(name, mode) for name in retrievers for mode in MODES]
    for name, mode in combos:
        for q in queries[:10]:  # warm-up
            retrievers[name].search(SearchRequest(q, k=10, mode=mode))
    timings: dict[tuple[str, Mode], list[dict]] = {c: [] for c in combos}
    it = [q for _ in range(repeat) for q in queries]
    for q in tqdm(it, desc="latency", unit="q", disable=not progress):
        for name, mode in combos:
            timings[(name, mode)].append(
                retrievers[name].search(SearchRequest(q, k=10, mode=mode)).timings_ms
            )
    out: dict[str, dict] = {name: {} for name in retrievers}
    for (name, mode), tms in timings.items():
        total = [tm["total"] for tm in tms]
        embed = [tm.get("embed", 0.0) for tm in tms]
        other = [t - e for t, e in zip(total, embed, strict=True)]
        out[name][mode.value] = {
            "p50_ms": pct(total, 50),
            "p95_ms": pct(total, 95),
            "mean_ms": round(float(np.mean(total)), 3),
            "embed_p50_ms": pct(embed, 50) if mode is not Mode.BM25 else None,
            "embed_share": round(float(np.sum(embed) / np.sum(total)), 3) if mode is not Mode.BM25 else None,
            "without_embed_p50_ms": pct(other, 50),
            "parts_p50_ms": {
                part: pct([tm[part] for tm in tms if part in tm], 50)
                for part in ("embed", "retrieve", "fill", "fetch")
                if any(part in tm for tm in tms)
            },
            "searches": len(total),
            "measured_on": where[name],
        }
    return out


# -- 3. quality ------------------------------------------------------------------------------------
def _pipeline(retriever: Retriever, mode: Mode):
    def run(q: str) -> list[tuple[str, float]]:
        res = retriever.search(SearchRequest(q, k=DEPTH, mode=mode, with_products=False))
        return [(h.id, h.score) for h in res.hits]

    return run


def measure_quality(retriever: Retriever, qrels, progress: bool, hw: str) -> dict:
    minmax = Retriever(
        retriever.backend, retriever.embedder, dataclasses.replace(retriever.config, fusion="minmax")
    )
    rrf_r = Retriever(
        retriever.backend, retriever.embedder, dataclasses.replace(retriever.config, fusion="rrf")
    )
    pipes = {
        "bm25": _pipeline(retriever, Mode.BM25),
        "vector": _pipeline(retriever, Mode.VECTOR),
        "hybrid (rrf)": _pipeline(rrf_r, Mode.HYBRID),
        "hybrid (minmax)": _pipeline(minmax, Mode.HYBRID),
    }
    res = evaluate_pipelines(qrels, pipes, progress=progress)
    return {
        name: {**{m: round(v, 4) for m, v in r.metrics.items()}, "measured_on": hw} for name, r in res.items()
    }


def measure_plain(products, retriever: Retriever, qrels, progress: bool, hw: str) -> dict:
    """The issue's baselines, measured: plain rank-bm25, MiniLM vectors, and their RRF (k=60)."""
    plain = PlainBM25(products)
    vec = _pipeline(retriever, Mode.VECTOR)

    def fused(q: str) -> list[tuple[str, float]]:
        lists = {
            "bm25": [Scored(i, s) for i, s in plain.search(q)],
            "vector": [Scored(i, s) for i, s in vec(q)],
        }
        return [(s.id, s.score) for s in rrf(lists, k=60.0)[:DEPTH]]

    pipes = {"plain BM25": plain.search, "plain MiniLM vectors": vec, "their RRF": fused}
    res = evaluate_pipelines(qrels, pipes, progress=progress)
    out = {
        name: {**{m: round(v, 4) for m, v in r.metrics.items()}, "measured_on": hw} for name, r in res.items()
    }
    out["plain BM25"]["build_s"] = round(plain.build_s, 3)
    out["_vectors_from"] = retriever.backend.name
    return out


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run.start("foundation", argv, args)
    progress = not args.quiet
    started = datetime.now(UTC)
    notes: list[str] = []
    os_version = None
    if "opensearch" in args.backends:
        os_version = opensearch_version(args.opensearch_url)
        if os_version is None:
            msg = f"OpenSearch at {args.opensearch_url} does not answer; skipping the opensearch backend"
            print(f"note: {msg} (start one with scripts/opensearch start)", file=sys.stderr)
            notes.append(msg)
            args.backends.remove("opensearch")
    if not args.backends:
        print("no backend left to measure", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    hw = hw_label(device)
    read = read_catalog(args.catalog, limit=args.limit)
    products = read.products
    qrels = load_judgments(args.judgments)
    queries = sorted(qrels)
    print(f"{len(products)} products, {len(queries)} queries; embedding on {hw}", file=sys.stderr)
    if args.limit:
        notes.append(
            f"--limit {args.limit}: only {len(products)} of the catalog's products are indexed, so most "
            "judged products are missing and the quality figures are NOT comparable to full-catalog ones"
        )

    data = tempfile.TemporaryDirectory(prefix="shoprank-bench-index-")
    base = Settings(
        data_dir=Path(data.name),
        opensearch_url=args.opensearch_url,
        opensearch_timeout_s=120.0,  # a refresh that builds HNSW graphs for the full catalog takes a while
        index_alias=BENCH_ALIAS,
        device=args.device,
        batch_size=args.batch_size,
    )
    embedder = embedder_from(base)
    result: dict = {
        # one run makes the whole document (its renderer, bench.report, reads one run's sections)
        "run": run.as_dict(),
        "date": started.isoformat(timespec="seconds"),
        "machine": run.machine,
        "embedding_device": device,
        "hardware_label": hw,
        "python": platform.python_version(),
        "versions": _versions(os_version),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "catalog": {"path": str(args.catalog), "products": len(products), "bad_rows": len(read.errors)},
        "judgments": {
            "path": str(args.judgments),
            "queries": len(queries),
            "evaluable": sum(1 for d in qrels.values() if any(r > 0 for r in d.values())),
        },
        "notes": notes,
        "loadavg": [round(os.getloadavg()[0], 2)],
        "reference_quoted": REFERENCE,
    }
    retrievers: dict[str, Retriever] = {}
    try:
        print("== 1. indexing: cold embedding (fresh cache)", file=sys.stderr)
        result["indexing"] = measure_embedding(
            products, embedder, args.cache_dir, args.batch_size, progress, hw
        )
        result["indexing"]["backends"] = {}
        for name in args.backends:
            print(f"== 1. indexing: warm build on {name}", file=sys.stderr)
            if name == "opensearch":
                _drop(base)  # leftovers of an interrupted run
            got = index_backend(
                name, base.model_copy(update={"backend": name}), products, embedder, args.cache_dir, args, hw
            )
            result["indexing"]["backends"][name] = got["report"]
            retrievers[name] = got["retriever"]
        result["loadavg"].append(round(os.getloadavg()[0], 2))
        print(f"== 2. latency on {', '.join(retrievers)} (interleaved)", file=sys.stderr)
        where = {name: backend_hw(name, args.opensearch_url, hw) for name in retrievers}
        result["latency"] = measure_latency(retrievers, queries, args.repeat, progress, where)
        result["quality"] = {}
        for name, r in retrievers.items():
            print(f"== 3. quality on {name}", file=sys.stderr)
            result["quality"][name] = measure_quality(
                r, qrels, progress, backend_hw(name, args.opensearch_url, hw)
            )
        first = retrievers.get("embedded") or next(iter(retrievers.values()))
        result["quality_plain"] = measure_plain(products, first, qrels, progress, hw)
        print("== 4. BM25 implementations", file=sys.stderr)
        result["bm25_impl"] = compare_bm25(products, qrels, args.repeat, hw, progress)
        if "opensearch" in retrievers and "embedded" in retrievers:
            print("== 5. OpenSearch HNSW recall vs exact cosine", file=sys.stderr)
            ids = [p.id for p in products]
            vecs = retrievers["embedded"].backend.vectors(ids)
            result["knn_recall"] = measure_knn_recall(
                retrievers["opensearch"],
                ids,
                np.vstack([vecs[i] for i in ids]),
                queries,
                backend_hw("opensearch", args.opensearch_url, hw),
            )
    finally:
        if "opensearch" in retrievers or "opensearch" in args.backends:
            dropped = _drop(base)
            result.setdefault("cleanup", {})["opensearch_dropped"] = dropped
        data.cleanup()
    result["loadavg"].append(round(os.getloadavg()[0], 2))
    result["elapsed_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    args.out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = args.out / "foundation.json", args.out / "foundation.md"
    jpath.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md = render_markdown(result)
    mpath.write_text(md, encoding="utf-8")
    print(md)
    print(f"wrote {jpath} and {mpath} ({result['elapsed_s']} s)", file=sys.stderr)
    return 0


def _drop(s: Settings) -> list[str]:
    from indexer.opensearch.client import make_client
    from indexer.opensearch.store import OpenSearchStore

    try:
        return OpenSearchStore(make_client(s.opensearch_url, timeout=60), alias=BENCH_ALIAS).drop()
    except Exception as exc:  # cleanup must not hide the run's own error
        print(f"warning: could not drop {BENCH_ALIAS!r}: {exc}", file=sys.stderr)
        return []


def _versions(os_version: str | None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"opensearch_server": os_version}
    for pkg in ("torch", "sentence-transformers", "numpy", "scipy", "rank-bm25", "bm25s", "ranx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


if __name__ == "__main__":
    sys.exit(main())
