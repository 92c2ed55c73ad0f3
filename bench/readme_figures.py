"""README figures from the committed bench results.

``python -m bench.readme_figures`` rewrites every region of README.md between
``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` from ``bench/results/<bench>/*.json``;
``--check`` changes nothing and exits 1 with a diff when README.md differs from what the results
say. Each region names the file its figures come from and that run's date, machine and (where the
file records it) commit; rows that carry their own ``date``/``commit``/``machine`` are named with
theirs. A region whose markers sit on their own lines is a block; one inside a line is inline.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from bench.readme_query import typed_queries
from bench.readme_regions import (
    REGION,
    Doc,
    Results,
    diff,
    f3,
    interval,
    pair,
    source,
    table,
)
from bench.readme_regions import render as render_regions
from bench.serve_load import CACHE, ok_rps
from indexer.errors import ShoprankError

__all__ = ["REGION", "REGIONS", "main", "render"]

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = REPO / "bench" / "results"
EMBEDDERS = MappingProxyType({"minilm": "MiniLM", "hashing": "hashing"})
WORDS = MappingProxyType({0: "none", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five"})
FV = "fusion_variants/fusion_variants.json"
RECIPE = "`train fusion` recipe: nested CV picks all features or all but the cross-encoder"


# ---- retrieval ----------------------------------------------------------------------------------


def foundation(res: Results) -> str:
    rel = "foundation/foundation.json"
    d = res(rel)
    q, lat, plain = d["quality"], d["latency"], d["quality_plain"]["plain BM25"]

    def cells(key: str, lat_key: str) -> list[str]:
        e, o = q["embedded"][key], q["opensearch"][key]
        le, lo = lat["embedded"][lat_key], lat["opensearch"][lat_key]
        ms = f"{le['p50_ms']:.1f} / {le['p95_ms']:.1f} · {lo['p50_ms']:.1f} / {lo['p95_ms']:.1f}"
        return [
            pair(e["ndcg@10"], o["ndcg@10"]),
            pair(e["ndcg_condensed@10"], o["ndcg_condensed@10"]),
            pair(e["judged@10"], o["judged@10"], lambda v: f"{v:.2f}"),
            pair(e["recall@100"], o["recall@100"]),
            ms,
        ]

    plain_cells = [f3(plain["ndcg@10"]), f3(plain["ndcg_condensed@10"]), f"{plain['judged@10']:.2f}"]
    rows = [
        [
            "plain BM25 baseline (rank-bm25, title+brand+description)",
            *plain_cells,
            f3(plain["recall@100"]),
            "–",
        ],
        ["bm25 (analyzed `all_text` + weighted synonyms)", *cells("bm25", "bm25")],
        ["vector (MiniLM, exact / HNSW ef 256)", *cells("vector", "vector")],
        ["hybrid (RRF, bm25 1.0 + vector 0.5)", *cells("hybrid (rrf)", "hybrid")],
    ]
    head = "pipeline (embedded / OpenSearch)|nDCG@10|condensed nDCG@10|judged@10|recall@100|"
    head += "p50 / p95 ms, k=10 (embedded · OpenSearch)"
    j, ev, hy = d["judgments"], lat["embedded"]["vector"], lat["embedded"]["hybrid"]
    used = {"plain BM25": plain}
    for backend in ("embedded", "opensearch"):
        used |= {f"{backend} {p}": q[backend][p] for p in ("bm25", "vector", "hybrid (rrf)")}
        used |= {f"{backend} {p} latency": lat[backend][p] for p in ("bm25", "vector", "hybrid")}
    return (
        f"Headline figures from {source(rel, d, used)} ({j['queries']} dev queries, {j['evaluable']} with a relevant "
        "product; unjudged = 0; the defaults were tuned on these same queries):\n\n"
        + table(head.split("|"), rows)
        + "\n\nQuery latency is dominated by embedding the query on the CPU (embedded p50: "
        f"{ev['embed_p50_ms']:.1f} of vector's {ev['p50_ms']:.1f} ms, {hy['embed_p50_ms']:.1f} of hybrid's "
        f"{hy['p50_ms']:.1f} ms)."
    )


# ---- fusion and reranking -----------------------------------------------------------------------


def significance(res: Results) -> str:
    d = res(FV)
    gaps = d["ndcg@10_vs_hybrid"].values()
    half = [(g["high"] - g["low"]) / 2 for g in gaps]
    n = next(iter(gaps))["queries"]
    return (
        f"on {n} evaluable queries the 95% intervals reach ±{min(half):.2f} to ±{max(half):.2f} "
        f"({source(FV, d, d['ndcg@10_vs_hybrid'])}): a gap of ±0.02 is usually inside the noise"
    )


def fusion_in_fold(res: Results) -> str:
    d = res(FV)
    m = d["metrics"]
    keys = [f"pairwise: +retrieval rank, unjudged = 0, {how} [torch]" for how in ("in-fold", "oof")]
    a, b = (m[k]["ndcg@10"] for k in keys)
    return (
        f"{f3(a)} in-fold vs {f3(b)} out-of-fold, held-out nDCG@10 of a pairwise fusion of retrieval rank, "
        f"BM25, vector and cross-encoder; source {source(FV, d, {k: m[k] for k in keys})}"
    )


def fusion_held_out(res: Results) -> str:
    d = res(FV)
    m, folds = d["metrics"], d["weights"][f"{RECIPE} [torch]"]
    dropped = sum(1 for f in folds if "cross_encoder" not in f)
    return (
        f"held-out nDCG@10 {f3(m[RECIPE + ' [torch]']['ndcg@10'])} vs {f3(m['hybrid']['ndcg@10'])} for hybrid "
        f"({WORDS.get(dropped, str(dropped))} of the {WORDS.get(len(folds), str(len(folds)))} folds' fits "
        f"{'drops' if dropped == 1 else 'drop'} the cross-encoder; {source(FV, d, _rows(m, RECIPE + ' [torch]', 'hybrid'))})"
    )


TEXT_ONLY = "listnet: + lexical + keyword (no ce), oof [torch]"


def _rows(m: Doc, *keys: str) -> dict[str, Doc]:
    return {k: m[k] for k in keys}


def _text_only(d: Doc) -> float:
    return float(d["metrics"][TEXT_ONLY]["ndcg@10"])


def text_fusion(res: Results) -> str:
    d = res(FV)
    return f"{f3(_text_only(d))} held out with the same features on the reranker's {d['folds']} folds, {source(FV, d, _rows(d['metrics'], TEXT_ONLY))}"


def text_fusion_serve(res: Results) -> str:
    d = res(FV)
    return (
        f"held-out nDCG@10 {f3(_text_only(d))} vs hybrid {f3(d['metrics']['hybrid']['ndcg@10'])}, the same "
        f"features on the reranker's {d['folds']} folds: {source(FV, d, _rows(d['metrics'], TEXT_ONLY, 'hybrid'))}"
    )


def neural(res: Results) -> str:
    d, r = res(FV), res("reranking/reranking.json")
    m, gap = d["metrics"], d["ndcg@10_vs_hybrid"][f"{RECIPE} [torch]"]
    hy, rec, mmr = m["hybrid"], m[f"{RECIPE} [torch]"], m[f"{RECIPE} + MMR (diversity 0.3) [torch]"]
    ceiling = next(v for k, v in m.items() if k.startswith("ceiling"))
    lat = {(x["runtime"], x["candidates"]): x for x in r["latency"]}
    t50, i50 = lat[("torch", 50)], lat[("onnx-int8", 50)]
    used = _rows(m, "hybrid", "rerank [torch]", "rerank [onnx-int8]", f"{RECIPE} [onnx-int8]", TEXT_ONLY)
    used |= _rows(m, "listnet: + lexical (no ce), oof [torch]", "listnet: + lexical + ce, oof [torch]")
    used |= {"recipe": rec, "recipe + MMR": mmr, "ceiling": ceiling, "recipe vs hybrid": gap}
    return (
        f"Neural ranking, from {source(FV, d, used)} (query-level {d['folds']}-fold CV on the 100 dev queries, "
        f"unjudged = 0): hybrid {f3(hy['ndcg@10'])} nDCG@10, rerank {f3(m['rerank [torch]']['ndcg@10'])} "
        f"(int8 ONNX {f3(m['rerank [onnx-int8]']['ndcg@10'])}); the `train fusion` recipe {f3(rec['ndcg@10'])} "
        f"(int8 ONNX {f3(m[RECIPE + ' [onnx-int8]']['ndcg@10'])}) — {interval(gap, 'hybrid')}. Its candidates "
        f"are the hybrid top {d['candidates']} plus the strict keyword leg's top {d['strict_candidates']}, and "
        "most of the gain comes from the leg's two features: without them the text features give "
        f"{f3(m['listnet: + lexical (no ce), oof [torch]']['ndcg@10'])} on the same candidates "
        f"({f3(m['listnet: + lexical + ce, oof [torch]']['ndcg@10'])} with the cross-encoder), and the text "
        f"features with them but without the cross-encoder give {f3(_text_only(d))}. The gain is in *which* "
        f"products reach the top 10 (judged@10 {hy['judged@10']:.2f} → {rec['judged@10']:.2f}); the order among "
        f"judged products stays where it was (condensed nDCG@10 {f3(hy['ndcg_condensed@10'])} → "
        f"{f3(rec['ndcg_condensed@10'])}). The judgments were pooled from one keyword engine that required "
        'every query term (see bench/README.md, "Strict keyword leg"), so a gain measured on them rewards '
        "ranking like that engine; new shoppers' judgments would tell how much is real. MMR at diversity 0.3 "
        f"on top: {f3(mmr['ndcg@10'])}, distinct brands in the top 10 {rec['distinct_brands@10']:.2f} → "
        f"{mmr['distinct_brands@10']:.2f}. A perfect reranker of the same candidates would score "
        f"{f3(ceiling['ndcg@10'])}.\n"
        f"Cross-encoder latency for 50 candidates p50 / p95 ({source('reranking/reranking.json', r, {'torch': t50, 'int8': i50})}): torch "
        f"{t50['p50_ms']:.0f} / {t50['p95_ms']:.0f} ms, ONNX int8 {i50['p50_ms']:.0f} / {i50['p95_ms']:.0f} ms."
    )


# ---- sentiment ----------------------------------------------------------------------------------

SENT = "sentiment/sentiment.json"


def _sentiment_rows(res: Results) -> tuple[Doc, dict[str, Doc]]:
    d = res(SENT)
    return d, {row["lang"]: row for row in d["rows"]}


def sentiment_cost(res: Results) -> str:
    d, rows = _sentiment_rows(res)
    zh = rows["zh"]
    return (
        f"the second fine-tuning run alone took {zh['train_s'] / 3600:.1f} h on the 2-core CPU and the "
        f"stacking {zh['total_s'] / 60:.0f} min: the zh row of {source(SENT, d, {'zh': zh})}"
    )


def sentiment(res: Results) -> str:
    d, rows = _sentiment_rows(res)
    base = res("sentiment/baseline.json")
    pooled = next(r for r in base["rows"] if r["set"].startswith("en Blitzer, 4 domains"))
    en, zh = rows["en"], rows["zh"]
    zh_from = " continued from an earlier model with `--init-from`" if zh.get("init_from") else ""
    ge, gz = en["blend_gain"], zh["blend_gain"]
    return (
        f"Review sentiment (held-out; {source(SENT, d, rows)}; and {source('sentiment/baseline.json', base, {'en': pooled})}): "
        f"English (Blitzer, {en['train']:,} training reviews, {en['epochs']} epoch): TF-IDF + logistic regression "
        f"{f3(pooled['accuracy'])} on all {int(pooled['n_test']):,} held-out reviews (`baseline.json`); the "
        f"stacked run learns its weights on {en['dev']:,} of them and scores the other {en['test']:,}: stacked "
        f"{f3(en['blend_acc'])}, MiniLM alone {f3(en['minilm_acc'])}, baseline {f3(en['baseline_acc'])}, gain "
        f"{ge['delta']:+.3f} [{ge['low']:+.3f}, {ge['high']:+.3f}]. Chinese (MiniLM's vocabulary extended with "
        f"the training set's characters, all {zh['train']:,} training reviews, max length {zh['max_length']}, "
        f"{zh['epochs']} epoch{zh_from}) {zh['minilm_acc']:.4f} vs {zh['baseline_acc']:.4f} for the baseline on "
        f"the same {zh['test']:,} test reviews: MiniLM alone stays below it, losing mostly on short reviews. "
        f"Stacked with the n-gram head (`train sentiment-blend`, weights and head C = {zh['head_C']:.0f} learnt "
        f"on the {zh['dev']:,} held-out reviews outside the {zh['test']:,}-review test sample) it reaches "
        f"{zh['blend_acc']:.4f}: {interval(gz, 'the baseline', 4)}."
    )


# ---- embedder, serving, recommendations ---------------------------------------------------------


def embedder_onnx(res: Results) -> str:
    rel = "embedder_onnx/embedder_onnx.json"
    d = res(rel)
    t, f, i = (d["rows"][k] for k in ("minilm", "minilm-onnx", "minilm-onnx-int8"))
    nd = [k for k in t if "ndcg" in k]
    fp32 = "identical nDCG" if all(t[k] == f[k] for k in nd) else f"hybrid nDCG@10 {f3(f['hybrid ndcg@10'])}"
    delta = i["hybrid ndcg@10"] - t["hybrid ndcg@10"]
    return (
        f"Bi-encoder on onnxruntime ({source(rel, d, d['rows'])}; queries only, the index is the torch one): fp32 {fp32}, "
        f"query embedding p50 {f['query p50 ms']:.1f} ms vs {t['query p50 ms']:.1f} ms on torch; int8 hybrid "
        f"nDCG@10 {f3(i['hybrid ndcg@10'])} vs {f3(t['hybrid ndcg@10'])} ({delta:+.3f}), "
        f"{i['query p50 ms']:.1f} ms per query, {i['docs/s'] / t['docs/s']:.1f}× the document throughput."
    )


SCENARIOS = MappingProxyType(
    {
        "search-hybrid": "`/v1/search` hybrid",
        "search-full": "full without a cross-encoder",
        "search-full +ce int8": "full with the int8 cross-encoder",
        "similar": "similar items",
        "suggest": "suggest",
        "write-while-reading": "full while product writes stream in",
        "node-bm25": "BM25 `_search` straight to the node (peer floor)",
        "node-knn": "kNN `_search` straight to the node (peer floor)",
    }
)
FIRST_SEARCH = "first search after /readyz"


def _scenario(name: str) -> str:
    """A serve_load row's scenario without its labels (" uncached", " ×N workers")."""
    return re.sub(r" ×\d+ workers$", "", name.removesuffix(" (opensearch)")).removesuffix(" uncached")


def _cache(row: dict) -> str:
    """The result-cache column: only the embedded backend has one (OpenSearch answers are never
    cached: other processes write to the node)."""
    if row.get("backend", "embedded") != "embedded":
        return "–"
    return CACHE.get(row.get("result_cache"), "none yet")


def serving(res: Results) -> str:
    rel, rrel = "serve_load/serve_load.json", "recommend/recommend.json"
    d, rec = res(rel), res(rrel)
    rows = list(d["rows"])
    used = {f"{r['scenario']} ×{r['connections']}": r for r in rows}
    lines = [
        [
            SCENARIOS.get(_scenario(r["scenario"]), r["scenario"]),
            r.get("backend", "embedded"),
            "–" if _scenario(r["scenario"]).startswith("node-") else str(r.get("workers", 1)),
            _cache(r),
            str(r["connections"]),
            f"{ok_rps(r):.1f}",
        ]
        + [f"{r[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms")]
        + [str(r["non_200"])]
        for r in rows
        if _scenario(r["scenario"]) in SCENARIOS
    ]
    first = [r for r in rows if r["scenario"].startswith(FIRST_SEARCH)]
    writing = [r for r in rows if "writes" in r]
    writes = "".join(
        f"; during `write-while-reading` ×{r['connections']}"
        f"{', ' + str(r['workers']) + ' workers' if r.get('workers', 1) > 1 else ''}"
        f"{' (cache ' + CACHE[r['result_cache']] + ')' if 'result_cache' in r else ''} the writer "
        f"(`PUT /v1/products/{{id}}` price and stock updates, asked {r['write_rate_target']:g}/s) had "
        f"{r['writes']['ok_rps']:.1f} writes/s accepted, p50 {r['writes']['p50_ms']:.0f} ms"
        for r in writing
    )
    text = (
        f"Serving ({source(rel, d, used)}): `wrk -t2` on loopback against `shoprank serve` over the embedded "
        "index (the OpenSearch node's where the backend says so; its peer-floor rows are the same BM25 and "
        "kNN requests sent by wrk straight to the node), with 1 or 2 worker processes, cycling through the dev queries (similar items: 200 products; suggest: every keystroke of the "
        "dev queries); wrk shares the two cores with the service; at 64 connections the admission control "
        "(`SHOPRANK_MAX_INFLIGHT` 4, `SHOPRANK_MAX_QUEUED` 16) answers the excess 429 at once, so only "
        "the 200s count as req/s here (the latencies are of every answer); the 100 queries repeat, so with "
        "the result cache on all but their first pass are cache hits (`off`: every search through the pipeline)"
        + "".join(
            f"; the first search after `/readyz`{' (' + str(r['workers']) + ' workers)' if r.get('workers', 1) > 1 else ''}"
            f"{' on OpenSearch' if r['scenario'].endswith('(opensearch)') else ''} "
            f"took {r['latency_ms']:.0f} ms"
            for r in first
        )
        + writes
        + (
            "; the cross-encoder rows serve `full` with an int8 ONNX cross-encoder from `shoprank train "
            "reranker --folds 0` (trained for these latency rows; its quality is the cross-validated one "
            "above) reading the first pass's top 30 (`SHOPRANK_RERANK_TOP`), scores cached per query and "
            "product text"
            if any("+ce" in r["scenario"] for r in rows)
            else ""
        )
        + ":\n\n"
        + table(
            [
                "scenario",
                "backend",
                "workers",
                "result cache",
                "connections",
                "2xx req/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "non-2xx (429)",
            ],
            lines,
        )
    )
    movielens = next(r for r in rec["results"] if r["dataset"] == "MovieLens-100k")
    ml = movielens["metrics"]

    def hr(kind: str, who: str) -> str:
        return f"{ml[kind][who]['hit_rate']:.3f} / {ml[kind][who]['ndcg']:.3f}"

    return text + (
        f"\n\nRecommendations ({source(rrel, rec, {'MovieLens-100k': movielens})}): MovieLens-100k, last purchase held out: `user` HR@{rec['k']} "
        f"/ nDCG@{rec['k']} {hr('user', 'shoprank')} (item-kNN {hr('user', 'item-kNN')}, popularity "
        f"{hr('user', 'popularity')}); `similar` {hr('similar', 'shoprank')} (item-kNN "
        f"{hr('similar', 'item-kNN')}, popularity {hr('similar', 'popularity')})."
    )


def scale(res: Results) -> str:
    rel = "scale/scale.json"
    d = res(rel)
    rows = sorted(d["rows"], key=lambda r: r["products"])

    def pp(x: Doc) -> str:
        return f"{x['p50_ms']:.1f} / {x['p95_ms']:.1f}"

    lines = [
        [
            f"{r['products']:,}",
            f"{r['load_s']:.0f}",
            f"{r['restart_s']:.0f}" if "restart_s" in r else "–",
            f"{r['rss_mb']:,}",
            f"{r['max_rss_mb']:,}" if "restart_s" in r else "–",
            f"{r['disk_mb']:,}",
            pp(r["lexical"]),
            pp(r["strict"]),
            f"{pp(r['knn'])} ({r['knn_engine']}, recall@100 {r['knn_recall@100']:.3f})",
            pp(r["hybrid"]),
            pp(r["write"]),
            f"{r['merge_s']:.1f}",
        ]
        for r in rows
    ]
    return (
        f"Scale on SYNTHETIC catalogs derived from the Chorus products, for cost only ({source(rel, d, {str(r['products']): r for r in rows})}); "
        "one client in process, query vectors precomputed; a write is visible to the next read:\n\n"
        + table(
            [
                "products",
                "load s",
                "restart s",
                "RSS MB",
                "peak RSS MB",
                "disk MB",
                "lexical p50 / p95 ms",
                "strict",
                "kNN",
                "hybrid",
                "write",
                "merge s",
            ],
            lines,
        )
    )


# ---- hostile input, faults, overload ------------------------------------------------------------


def event_attack(res: Results) -> str:
    rel = "event_attack/event_attack.json"
    d = res(rel)
    p, rows = d["parameters"], {r["attack"]: r for r in d["rows"]}
    fab, srch, co = rows["fabricated"], rows["searched"], rows["co_interaction"]
    trending = (
        "out of trending" if fab.get("trending_after") is None else f"at {fab['trending_after']} in trending"
    )
    similar = "out of" if co.get("similar_after") is None else f"at rank {co['similar_after']} of"
    refused = all(rows[k]["status"] == 422 and rows[k]["popularity_changed"] == 0 for k in ("future", "nan"))
    dated = (
        "is 422 and changes no product's popularity"
        if refused
        else "is answered " + " / ".join(str(rows[k]["status"]) for k in ("future", "nan"))
    )
    return (
        f"* `python -m bench.event_attack` ({source(rel, d, rows)}; Chorus, "
        f"{EMBEDDERS.get(p['embedder'], p['embedder'])}, the synthetic UBI log as trusted history): {fab['accepted']:,} fabricated "
        f"click/purchase events from {p['searchers']:,} fake shoppers leave the attacked product at rank "
        f"{fab['full_after']} of “{p['query']}” in `full` and {trending}; the same {p['searchers']:,} shoppers "
        f"each running a real search first lift it {srch['full_before']} → {srch['full_after']} (its "
        f"popularity mass {srch.get('popularity_mass', '?')}, the earned floor); {co['accepted']:,} events "
        f"pairing a laptop bag with a staple cartridge leave the cartridge {similar} the bag's similar items; "
        f"one event dated three years ahead or with a NaN date {dated}."
    )


def crash_durability(res: Results) -> str:
    rel = "crash_durability/crash_durability.json"
    d = res(rel)
    per, ready = [], []
    for w in d["writes"]:
        ev = sum(r["events"]["acked"] for r in w["rows"])
        pr = sum(r["products"]["acked"] for r in w["rows"])
        lost = sum(r["events"]["lost"] + r["products"]["lost"] for r in w["rows"])
        per.append((w["backend"], ev, pr, lost))
        ready += [r["restart_to_ready_s"] for r in w["rows"]]
    lost_all = sum(x[3] for x in per)
    trials = d["build"]["trials"]
    used = {f"{w['backend']} writes": w for w in d["writes"]} | {"index kills": d["build"]}
    kept = all(t["current_unchanged"] for t in trials)
    rounds = WORDS.get(d["parameters"]["rounds"], str(d["parameters"]["rounds"]))
    names = {"embedded": "embedded", "opensearch": "OpenSearch"}
    acked = "; ".join(
        f"{names.get(b, b)}: {ev:,} events and {pr:,} products acknowledged" for b, ev, pr, _ in per
    )
    return (
        f"* `python -m bench.crash_durability` ({source(rel, d, used)}): {rounds} kill -9 of `shoprank serve` during concurrent event and "
        f"product writes on each backend lose {lost_all} acknowledged writes ({acked}), and the restarts are "
        f"ready in {min(ready):.1f}–{max(ready):.1f} s; {WORDS.get(len(trials), str(len(trials)))} kill -9 of "
        f"`shoprank index` mid-build {'leave the live version serving' if kept else 'change the live version'}."
    )


def overload(res: Results) -> str:
    rel = "overload/overload.json"
    d = res(rel)
    rows = {(r["variant"], r["scenario"], r["connections"]): r for r in d["rows"]}

    def ok(v: str, s: str, c: int) -> float:
        return float(rows[(v, s, c)]["ok_rps"])

    def p99(v: str, s: str) -> str:
        return f"{rows[(v, s, 64)]['admitted_p99_ms'] / 1000:.1f}"

    dp = rows[("default", "hybrid", 64)]["parameters"]
    legacy = rows[("legacy", "hybrid", 64)]["parameters"]["max_inflight"]
    held = all(ok("default", s, 64) >= ok("default", s, 8) for s in ("hybrid", "full"))
    share = " / ".join(f"{ok('legacy', s, 64) / ok('legacy', s, 8):.0%}" for s in ("hybrid", "full"))
    slow = rows[("default", "slowloris", 8)]
    sl = slow["slowloris"]
    ended = ", ".join(code if n == sl["stalled"] else f"{code} ({n})" for code, n in sl["ended"].items())
    return (
        f"* `python -m bench.overload` ({source(rel, d, {' '.join(map(str, k)) + ' conns': v for k, v in rows.items()})}; wrk, hybrid and full, "
        f"{EMBEDDERS.get(d['parameters']['embedder'], d['parameters']['embedder'])} embedder): at 64 connections the admission defaults "
        f"({dp['max_inflight']} in flight, {dp['max_queued']} queued, {dp['queue_wait_s']:g} s) keep successful "
        f"throughput {'at or above' if held else 'compared with'} the 8-connection figure (hybrid "
        f"{ok('default', 'hybrid', 64):.0f} vs {ok('default', 'hybrid', 8):.0f} /s, full "
        f"{ok('default', 'full', 64):.0f} vs {ok('default', 'full', 8):.0f} /s) and the admitted p99 at "
        f"{p99('default', 'hybrid')} / {p99('default', 'full')} s, where the old {legacy}-slot admission falls to "
        f"{share} of it with admitted p99 {p99('legacy', 'hybrid')} / {p99('legacy', 'full')} s; "
        f"{sl['stalled']} stalled uploads get {ended} after {sl['ended_after_s_p50']:.1f} s (p50) while searches "
        f"keep answering ({slow['ok_rps']:.0f} /s)."
    )


RENDERERS: tuple[Callable[[Results], str], ...] = (
    foundation,
    significance,
    fusion_in_fold,
    fusion_held_out,
    text_fusion,
    text_fusion_serve,
)
RENDERERS += (
    sentiment_cost,
    neural,
    sentiment,
    embedder_onnx,
    serving,
    scale,
    event_attack,
    crash_durability,
    overload,
    typed_queries,
)
REGIONS: Mapping[str, Callable[[Results], str]] = MappingProxyType(
    {f.__name__.replace("_", "-"): f for f in RENDERERS}
)


def render(readme: str, results: Path) -> str:
    """README text with every figures region regenerated from the result files under ``results``."""
    return render_regions(readme, results, REGIONS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 with a diff if README differs"
    )
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    try:
        old = args.readme.read_text(encoding="utf-8")
        new = render(old, args.results)
    except (OSError, ShoprankError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != old:
            print(diff(old, new, str(args.readme)))
            print(
                "README figures differ from bench/results: run `python -m bench.readme_figures`",
                file=sys.stderr,
            )
            return 1
        return 0
    if new != old:
        args.readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
