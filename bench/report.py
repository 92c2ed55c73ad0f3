"""Markdown rendering of the foundation benchmark's JSON (one table per section)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ranker.evaluation.relevance import METRICS


def _fmt(v: object, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(header: Sequence[str], rows: Iterable[Sequence[object]], digits: int = 2) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c, digits) for c in r) + " |" for r in rows]
    return out + [""]


def render_markdown(r: dict) -> str:
    lines = _header(r)
    for section in (_indexing, _latency, _quality, _baselines, _bm25_impl, _knn_recall):
        lines += section(r)
    return "\n".join(lines).rstrip() + "\n"


def _header(r: dict) -> list[str]:
    """Title, when and where it ran, the data, the versions, and the run's notes."""
    v = r["versions"]
    lines = [
        "# shoprank foundation benchmark",
        "",
        f"- date: {r['date']} (run took {r.get('elapsed_s', '?')} s)",
        *_run_line(r.get("run")),
        f"- machine: {r['machine']}; embeddings on **{r['embedding_device']}** ({r['hardware_label']})",
        f"- catalog: {r['catalog']['path']}: {r['catalog']['products']} products"
        f" ({r['catalog']['bad_rows']} bad rows skipped)",
        f"- judgments: {r['judgments']['path']}: {r['judgments']['queries']} queries, "
        f"{r['judgments']['evaluable']} with a relevant product",
        f"- load average (1 min) at start / before latency / end: {r.get('loadavg', '?')} "
        "(other work on this machine makes latencies noisy)",
        f"- versions: OpenSearch {v.get('opensearch_server') or '–'}, "
        + ", ".join(f"{k} {val}" for k, val in v.items() if k != "opensearch_server" and val),
        "",
    ]
    lines += [f"> **note:** {n}" for n in r.get("notes", [])]
    lines += [""] if r.get("notes") else []
    return lines


def _run_line(run: dict | None) -> list[str]:
    """The run that made the document: its date, commit, command and machine (and how it was known)."""
    if not run:
        return ["- run: provenance not recorded"]
    cmd = f"`{run['command']}`" if run.get("command") else "command not recorded"
    note = f" ({run['note']})" if run.get("note") else ""
    return [
        f"- run: {run.get('date') or 'date not recorded'} · commit {run.get('commit') or 'not recorded'} · "
        f"{cmd} · {run.get('machine') or 'machine not recorded'}{note}"
    ]


def _indexing(r: dict) -> list[str]:
    """Section 1: embedding (cold, warm), the stores' writes, opening and the first query."""
    ix = r.get("indexing")
    if not ix:
        return []
    lines = [
        "## 1. Indexing throughput",
        "",
        f"Model {ix['model_id']}, batch size {ix['batch_size']}; model load {ix['model_load_s']:.2f} s "
        "(not counted). COLD = a fresh, empty embedding cache (every product embedded); WARM = the "
        f"persistent cache {ix['persistent_cache']['dir']} (re-indexing an unchanged catalog; "
        f"{ix['persistent_cache']['primed_from_cold_run']} vectors were missing there and were "
        "copied in from the cold run first). Write = the store's build only (no embedding).",
        "",
    ]
    return lines + table(
        ["phase", "backend", "products", "embedded", "seconds", "docs/s", "measured on"], _indexing_rows(ix)
    )


def _indexing_rows(ix: dict) -> list[list[object]]:
    """Cold embedding, then per backend: warm embedding, the write, opening, the first query."""
    c = ix["cold"]
    rows: list[list[object]] = [
        ["embed, cold", "–", c["products"], c["embedded"], c["seconds"], c["docs_per_s"], c["measured_on"]]
    ]
    for name, b in ix["backends"].items():
        w = b["warm_embed"]
        rows.append(
            [
                "embed, warm",
                name,
                w["products"],
                w["embedded"],
                w["seconds"],
                w["docs_per_s"],
                w["measured_on"],
            ]
        )
    for name, b in ix["backends"].items():
        w = b["write"]
        rows.append(
            [
                f"write: {w['what']}",
                name,
                w["documents"],
                "–",
                w["seconds"],
                w["docs_per_s"],
                w["measured_on"],
            ]
        )
    for name, b in ix["backends"].items():
        rows.append(["open for search (load, analyze)", name, "–", "–", b["open_s"], "–", b["measured_on"]])
        rows.append(
            [
                "first BM25 query (embedded: builds the BM25 matrix)",
                name,
                "–",
                "–",
                b["first_query_s"],
                "–",
                b["measured_on"],
            ]
        )
    return rows


def _latency(r: dict) -> list[str]:
    """Section 2: query latency per backend and mode, with the embedding's share and each step's p50."""
    lat = r.get("latency")
    if not lat:
        return []
    lines = [
        "## 2. Query latency (k=10, products fetched)",
        "",
        "Per search through `Retriever.search` (SearchResult.timings_ms['total']), all judged queries "
        "× repeat after a 10-query warm-up per mode, interleaved (each query runs through every "
        "backend and mode in turn). `embed` = query embedding; share = its part of "
        "the summed total; per step = p50 of each timings_ms part (retrieve, fill = scores of hits "
        "missing from one list, fetch = products). OpenSearch latencies include the HTTP round trips from this client.",
        "",
    ]
    rows = [
        [
            name,
            mode,
            m["p50_ms"],
            m["p95_ms"],
            m["mean_ms"],
            m["embed_p50_ms"],
            None if m["embed_share"] is None else f"{100 * m['embed_share']:.0f}%",
            m["without_embed_p50_ms"],
            " ".join(f"{k} {v:.1f}" for k, v in m.get("parts_p50_ms", {}).items()),
            m["searches"],
            m["measured_on"],
        ]
        for name, modes in lat.items()
        for mode, m in modes.items()
    ]
    return lines + table(
        [
            "backend",
            "mode",
            "p50 ms",
            "p95 ms",
            "mean ms",
            "embed p50 ms",
            "embed share",
            "p50 w/o embed ms",
            "p50 per step ms",
            "searches",
            "measured on",
        ],
        rows,
    )


def _quality(r: dict) -> list[str]:
    """Section 3: relevance metrics per backend and pipeline."""
    q = r.get("quality")
    if not q:
        return []
    lines = [
        "## 3. Relevance (dev judgments, runs of depth 100, products not fetched)",
        "",
        "nDCG@10 counts unjudged products as irrelevant (unjudged = 0); condensed nDCG drops them; "
        "judged@10 is the judged share of the top 10.",
        "",
    ]
    rows = [
        [name, pipe, *[m[k] for k in METRICS], m["measured_on"]]
        for name, pipes in q.items()
        for pipe, m in pipes.items()
    ]
    return lines + table(["backend", "pipeline", *METRICS, "measured on"], rows, digits=4)


def _baselines(r: dict) -> list[str]:
    """Section 3's baselines: plain BM25, plain vectors and their RRF beside the issue's figures."""
    plain = r.get("quality_plain")
    if not plain:
        return []
    lines = [
        "### Baselines: measured in this run vs. the issue's quoted figures",
        "",
        "plain BM25 = rank_bm25.BM25Okapi over lowercase `\\w+` tokens of title + brand + description; "
        f"plain MiniLM vectors = the {plain['_vectors_from']} backend's vector mode (MiniLM over title, "
        "brand, category, description[:400]); their RRF = RRF (k=60) of those two top-100 lists. "
        "The quoted column is copied from the issue, not measured here.",
        "",
    ]
    rows = [
        [
            name,
            m["ndcg@10"],
            r["reference_quoted"].get(name),
            m["ndcg_condensed@10"],
            m["judged@10"],
            m["mrr@10"],
            m["recall@100"],
            m["measured_on"],
        ]
        for name, m in plain.items()
        if not name.startswith("_")
    ]
    return lines + table(
        [
            "baseline",
            "nDCG@10 (measured)",
            "nDCG@10 (issue, quoted)",
            "ndcg_condensed@10",
            "judged@10",
            "mrr@10",
            "recall@100",
            "measured on",
        ],
        rows,
        digits=4,
    )


def _bm25_impl(r: dict) -> list[str]:
    """Section 4: the BM25 implementations' speed and quality, and how far they agree."""
    b = r.get("bm25_impl")
    if not b:
        return []
    p = b["params"]
    lines = [
        "## 4. BM25 implementation for the embedded backend",
        "",
        f"Same corpus for all: {b['corpus']} ({b['documents']} documents, analysis {b['analyze_s']:.2f} s "
        f"not counted); k1={p['k1']}, b={p['b']}; a query = analyzed tokens → scores → top {p['depth']}. "
        "Quality columns are single-field BM25 without synonyms (not the backend's multi-field scoring).",
        "",
    ]
    rows = [
        [
            name,
            m["build_s"],
            m["latency_ms_p50"],
            m["latency_ms_p95"],
            m["ndcg@10"],
            m["recall@100"],
            m["queries"],
            m["measured_on"],
        ]
        for name, m in b["implementations"].items()
    ]
    lines += table(
        ["implementation", "build s", "p50 ms", "p95 ms", "nDCG@10", "recall@100", "queries", "measured on"],
        rows,
        digits=3,
    )
    agreement = [
        [
            f"{a['a']}{'' if a.get('score_scale_a', 1.0) == 1.0 else ' ÷ (k1+1)'} vs {a['b']}",
            a["top10_overlap_mean"],
            f"{a['top10_identical_queries']}/{a['queries']}",
            a["max_abs_score_diff"],
        ]
        for a in b["agreement"]
    ]
    lines += table(
        ["agreement", "mean top-10 overlap", "identical top 10", "max abs score diff"], agreement, 4
    )
    return lines + [
        "Lucene-style BM25 (bm25s `lucene`) drops the constant (k1 + 1) factor, so ours is divided by it "
        "for that comparison. Overlap below 1 or a non-identical top 10 with a ~0 score gap means tied "
        "scores in a different order (ours and rank-bm25 break ties by document order, bm25s by its top-k).",
        "",
    ]


def _knn_recall(r: dict) -> list[str]:
    """Section 5: the HNSW index's recall against exact cosine search, per ef_search."""
    k = r.get("knn_recall")
    if not k:
        return []
    lines = [
        "## 5. OpenSearch HNSW (lucene engine) recall against exact cosine search",
        "",
        f"Share of the exact top {k['depth']} (brute-force cosine over the same vectors) that the knn query "
        "returns, per ef_search (`method_parameters`; shoprank sends max(256, k) by default).",
        "",
    ]
    cols = list(k["rows"][0])
    return lines + table(cols, [[row[c] for c in cols] for row in k["rows"]], 4) + [""]
