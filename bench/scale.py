"""How the embedded backend's cost grows with the catalog: synthetic catalogs of 20k, 200k, 1M products.

SYNTHETIC, FOR COST ONLY, NEVER FOR QUALITY: each catalog is derived from the Chorus products of
the live embedded index (``shoprank index``): product ``i`` copies product ``i mod n`` with a new
id, one title word swapped for another word of the catalog's titles, a variant tag, a price moved
by up to ±20 %, and its vector moved by Gaussian noise (σ ``--noise`` per component, then
renormalized), so sizes, vocabularies and vector neighbourhoods look like a real shop's.

Per size, one child process generates the catalog and builds the index (writing the version
folder); a second, fresh one (so its RSS is a server's, not the generator's) measures the
backend's first load (reading it, analyzing the text, building the BM25 and strict-leg indexes
and the vector graph, which it saves beside the version: what a first start-up costs; a merge is
the same work without the read), a restart's load (the saved graph loaded, not rebuilt), the RSS
after load and its peak, the on-disk size, one client's
latency p50/p95 per mode over the dev queries (``lexical`` top 100, ``strict`` top 40, ``knn``
top 100: exact below the ANN threshold, hnswlib's graph above it, with its recall@100 against
exact search beside it; ``hybrid`` = lexical + knn, the backend calls a search makes; query vectors
precomputed, so the query embedding, constant in the catalog's size, is not in them), a write's
latency and its visibility (the next read finds it), and a merge's duration.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, Run, RunNotes, add_judgments, add_out, parser, rows_of, write_results

SIZES = (20_000, 200_000, 1_000_000)


def synthetic(n: int, index: Path, noise: float, seed: int = 5) -> tuple[list[Any], np.ndarray, Any]:
    """``n`` products and vectors derived from the live index (see the module's docstring)."""
    from indexer.embedded.store import EmbeddedStore

    snap = EmbeddedStore(index).load()
    src, vecs = snap.products, snap.vectors
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    words = sorted({w for p in src for w in p.title.split() if w.isalpha() and len(w) > 2})
    out = []
    for i in range(n):
        p = src[i % len(src)]
        title = p.title.split()
        if title:
            title[rng.randrange(len(title))] = rng.choice(words)
        price = None if p.price is None else round(p.price * rng.uniform(0.8, 1.2), 2)
        out.append(
            replace(p, id=f"syn{i}", title=" ".join(title) + f" v{i // len(src)}", price=price, ean=())
        )
    mat = np.empty((n, vecs.shape[1]), dtype=np.float32)
    step = 50_000
    for a in range(0, n, step):
        rows = np.arange(a, min(n, a + step)) % len(src)
        m = vecs[rows] + nrng.normal(0.0, noise, size=(len(rows), vecs.shape[1])).astype(np.float32)
        mat[a : a + len(rows)] = m / np.linalg.norm(m, axis=1, keepdims=True)
    return out, mat, snap.manifest


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2)}


def generate_and_build(n: int, index: Path, folder: Path, noise: float) -> dict[str, Any]:
    """The first child: catalog ``n`` generated and built into ``folder``."""
    from indexer.embedded.store import EmbeddedStore
    from indexer.product import catalog_hash

    t = time.perf_counter()
    products, vectors, manifest = synthetic(n, index, noise)
    gen_s = time.perf_counter() - t
    store = EmbeddedStore(folder)
    m = replace(manifest, catalog_hash=catalog_hash(products), documents=n)
    t = time.perf_counter()
    store.build(products, vectors, m)
    return {"generate_s": round(gen_s, 1), "build_s": round(time.perf_counter() - t, 1)}


def measure(n: int, folder: Path, queries: list[str], qvecs: np.ndarray) -> dict[str, Any]:
    """The second child: the index in ``folder`` loaded and measured."""
    import gc

    from indexer.embedded.store import EmbeddedStore
    from ranker.base import Filters
    from ranker.retrieval.embedded import EmbeddedBackend

    store = EmbeddedStore(folder)
    t = time.perf_counter()
    backend = EmbeddedBackend(store, merge_min=10**9)  # merges timed below, not in the loop
    load_s = time.perf_counter() - t
    rss = _rss_mb()
    disk = sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file())
    del backend
    gc.collect()
    t = time.perf_counter()
    backend = EmbeddedBackend(store, merge_min=10**9)  # a restart: the saved graph loaded
    restart_s = time.perf_counter() - t
    f = Filters()
    timings: dict[str, list[float]] = {"lexical": [], "strict": [], "knn": [], "hybrid": []}
    for _ in range(2):  # the second pass is measured
        for k in timings:
            timings[k].clear()
        for q, v in zip(queries, qvecs, strict=True):
            t0 = time.perf_counter()
            backend.lexical(q, 100, f)
            t1 = time.perf_counter()
            backend.strict_lexical(q, 40, f)
            t2 = time.perf_counter()
            backend.knn(v, 100, f)
            t3 = time.perf_counter()
            backend.hybrid(q, v, 100, f)
            t4 = time.perf_counter()
            timings["lexical"].append(t1 - t0)
            timings["strict"].append(t2 - t1)
            timings["knn"].append(t3 - t2)
            timings["hybrid"].append(t4 - t3)
    view = backend._view
    k = 100
    recall = []
    for v in qvecs:
        sims = view.base.vectors @ v
        want = {view.base.ids[i] for i in np.argpartition(-sims, k)[:k].tolist()}
        recall.append(len(want & {s.id for s in backend.knn(v, k, f)}) / k)
    writes, visible = [], []
    for i in range(50):
        p = replace(view.base.products[i * 7], title=f"zq{i}x scale probe", price=1.0 + i)
        t0 = time.perf_counter()
        backend.upsert([p], view.base.vectors[i * 7][None])
        t1 = time.perf_counter()
        hit = backend.strict_lexical(f"zq{i}x", 5, f)
        t2 = time.perf_counter()
        assert [h.id for h in hit] == [p.id], hit
        writes.append(t1 - t0)
        visible.append(t2 - t0)
    t = time.perf_counter()
    backend.merge()
    merge_s = time.perf_counter() - t
    return {
        "products": n,
        "synthetic": True,
        "load_s": round(load_s, 1),
        "restart_s": round(restart_s, 1),
        "rss_mb": round(rss),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "disk_mb": round(disk / 2**20),
        **{mode: _pct(xs) for mode, xs in timings.items()},
        "knn_engine": "hnsw" if view.base.ann is not None else "exact",
        "knn_recall@100": round(float(np.mean(recall)), 4),
        "write": _pct(writes),
        "write_to_visible": _pct(visible),
        "merge_s": round(merge_s, 1),
    }


def _markdown(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    lines = [
        "# Scale: how the embedded backend's cost grows (SYNTHETIC catalogs, cost only)",
        "",
        "Catalogs derived from the Chorus products (`bench/scale.py`: new ids, a title word swapped, "
        "prices and vectors perturbed): for cost, never for quality. One client, in process, query "
        "vectors precomputed. kNN is exact below 100k products and hnswlib's HNSW graph above (recall@100 "
        "against exact search beside it). Load = reading the version, analyzing, building BM25, the "
        "strict leg and the graph (a first start-up; a merge is the same work without the read); "
        "restart = the same with the graph saved by the first load read back. RSS after load in a "
        "process that only serves (the catalog is generated in another); peak = its high-water mark.",
        "",
        "| products | build s | load s | restart s | RSS MB | peak RSS MB | disk MB | lexical p50/p95 ms | "
        "strict p50/p95 | knn p50/p95 | knn | recall@100 | hybrid p50/p95 | write p50/p95 ms | "
        "write→visible p95 | merge s | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pp(d: dict[str, float]) -> str:
        return f"{d['p50_ms']} / {d['p95_ms']}"

    for r in rows_of(doc):
        lines.append(
            f"| {r['products']:,} | {r['build_s']} | {r['load_s']} | {r.get('restart_s', '–')} | {r['rss_mb']:,} | "
            f"{r.get('max_rss_mb', '–'):,} | {r['disk_mb']:,} | "
            f"{pp(r['lexical'])} | {pp(r['strict'])} | {pp(r['knn'])} | {r['knn_engine']} | {r['knn_recall@100']} | "
            f"{pp(r['hybrid'])} | {pp(r['write'])} | "
            f"{r['write_to_visible']['p95_ms']} | {r['merge_s']} | {notes.mark(r)} |"
        )
    return "\n".join([*lines, "", *notes.lines(), ""])


def main(argv: list[str] | None = None) -> int:
    ap = parser("scale", __doc__)
    add_judgments(ap)
    add_out(ap, "scale")
    ap.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    ap.add_argument("--noise", type=float, default=0.02, help="σ of the vector noise per component")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--build", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from plugin_api.settings import Settings

    index = Settings().embedded_dir
    with open(args.judgments, newline="") as fh:
        queries = sorted({row["query"] for row in csv.DictReader(fh)})
    if args.build:  # the first child: generate and build, its figures as JSON on the last line
        print(json.dumps(generate_and_build(args.build, index, args.dir, args.noise)), flush=True)
        return 0
    if args.one:  # the second child: load and measure
        qvecs = np.load(args.vectors)
        print(json.dumps(measure(args.one, args.dir, queries, qvecs)), flush=True)
        return 0
    this_run = Run.start("scale", argv, args)
    from plugin_api.backends import query_embedder_from

    qvecs = query_embedder_from(Settings()).encode(queries)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        vec_path = Path(tmp) / "queries.npy"
        np.save(vec_path, np.asarray(qvecs, dtype=np.float32))
        for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
            folder = Path(tmp) / f"index-{n}"
            row: dict[str, Any] = {}
            for step in (["--build", str(n)], ["--one", str(n), "--vectors", str(vec_path)]):
                cmd = [sys.executable, "-m", "bench.scale", *step, "--dir", str(folder)]
                cmd += ["--noise", str(args.noise), "--judgments", str(args.judgments)]
                r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
                if r.returncode != 0:
                    raise RuntimeError(f"size {n} failed:\n{r.stderr[-3000:]}")
                row.update(json.loads(r.stdout.strip().splitlines()[-1]))
            shutil.rmtree(folder, ignore_errors=True)
            row = {"products": n, **row}
            rows.append(row)
            print(
                f"{n:,} products: load {row['load_s']} s, RSS {row['rss_mb']} MB, hybrid p95 {row['hybrid']['p95_ms']} ms",
                flush=True,
            )
    write_results(args.out, "scale", rows, key=("products",), run=this_run, markdown=_markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
