"""Queries as shoppers type them: nDCG@10 on one-edit typos and cut-off last words, per backend.

The dev judgments' queries are turned into shopper-style variants by rules
(:mod:`ranker.evaluation.typed_variants`: transposition, deletion, insertion and neighbouring-key
substitution in the longest word; the last word cut to 34 %, 50 % and 67 % of its letters), each
scored with its clean query's judgments. Every pipeline runs with query understanding off (the
text as typed) and on (typos corrected, the last word completed: ``ranker.query``), on each
backend asked for; ``Δ clean`` is the variant's nDCG@10 minus the same queries' clean nDCG@10
through the same configuration. On OpenSearch, OpenSearch's own typo and prefix handling runs as
the peer: ``multi_match`` with ``fuzziness: AUTO`` (prefix length 1) on the combined text field
plus ``match_bool_prefix`` on it (BM25 only: compare it with the ``bm25`` rows).

Needs the index built for each backend (``shoprank index --catalog ../shared/data/chorus_icecat``,
with ``SHOPRANK_BACKEND=opensearch`` and a running node for OpenSearch). Merges its rows into
``OUT/typed_queries.json`` and renders ``OUT/typed_queries.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Run, RunNotes, add_judgments, add_out, add_quiet, parser, rows_of, write_results
from ranker.evaluation.relevance import Qrels, compute_metrics, load_judgments
from ranker.evaluation.typed_variants import PREFIX_CUTS, TYPO_KINDS, Variant, variants

KEY = ("backend", "pipeline", "understanding", "variant")
PEER = "opensearch fuzzy + match_bool_prefix"
KINDS = (*TYPO_KINDS, *(f"prefix-{c:.2f}" for c in PREFIX_CUTS))
Search = Callable[[str], list[str]]


class Searched:
    """A search function run once per distinct query (a clean query is scored for several
    variants), keeping each query's latency."""

    def __init__(self, search: Search):
        self.search = search
        self.ids: dict[str, list[str]] = {}
        self.ms: dict[str, float] = {}

    def __call__(self, q: str) -> list[str]:
        if q not in self.ids:
            t = time.perf_counter()
            self.ids[q] = self.search(q)
            self.ms[q] = (time.perf_counter() - t) * 1000.0
        return self.ids[q]


class TypePrecision:
    """Type-precision@10 of a result list: the share of its top 10 of the product type the *clean*
    query names (``ranker.query.types``; None when it names none). Types and intents are read
    with the full query understanding, whatever configuration produced the list."""

    def __init__(self, rewriter: Any, backend: Any):
        self.rewriter = rewriter
        self.backend = backend
        self.intents: dict[str, Any] = {}
        self.types: dict[str, frozenset[str]] = {}

    def __call__(self, clean: str, ids: Sequence[str]) -> float | None:
        from ranker.query.types import type_precision

        if clean not in self.intents:
            self.intents[clean] = self.rewriter.rewrite(clean).intent
        intent = self.intents[clean]
        if intent is None:
            return None
        top = list(ids[:10])
        missing = [i for i in top if i not in self.types]
        for i, p in self.backend.fetch(missing).items():
            self.types[i] = self.rewriter.product_types(p.title, p.category)
        return type_precision(intent, [self.types.get(i, frozenset()) for i in top])


def _evaluate(
    search: Searched, pairs: Sequence[tuple[str, str]], qrels: Qrels, typing: TypePrecision | None = None
) -> dict[str, Any]:
    """Metrics of ``search`` over (clean, typed) pairs, scored with the clean query's judgments."""
    run: dict[str, dict[str, float]] = {}
    lat = []
    precision = []
    for clean, typed in pairs:
        ids = search(typed)
        lat.append(search.ms[typed])
        run[clean] = {d: float(len(ids) - i) for i, d in enumerate(ids)}
        if typing is not None and (tp := typing(clean, ids)) is not None:
            precision.append(tp)
    sub = {c: qrels[c] for c, _ in pairs}
    m = compute_metrics(run, sub)
    return {
        "queries": len(pairs),
        **{k: round(m[k], 4) for k in ("ndcg@10", "ndcg_condensed@10", "judged@10")},
        "type_precision@10": round(float(np.mean(precision)), 4) if precision else None,
        "typed_intent_queries": len(precision),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 2),
    }


def _rows(
    search: Searched,
    qrels: Qrels,
    by_kind: dict[str, list[Variant]],
    base: dict[str, Any],
    quiet: bool,
    typing: TypePrecision | None = None,
) -> list[dict[str, Any]]:
    rows = []
    clean = _evaluate(search, [(q, q) for q in sorted(qrels)], qrels, typing)
    rows.append({**base, "variant": "clean", **clean})
    for kind in KINDS:
        vs = by_kind.get(kind, [])
        if not vs:
            continue
        typed = _evaluate(search, [(v.clean, v.typed) for v in vs], qrels, typing)
        same = _evaluate(search, [(v.clean, v.clean) for v in vs], qrels)
        rows.append(
            {
                **base,
                "variant": kind,
                **typed,
                "clean_ndcg@10": same["ndcg@10"],
                "delta_vs_clean": round(typed["ndcg@10"] - same["ndcg@10"], 4),
            }
        )
        if not quiet:
            print(f"{base} {kind}: {typed['ndcg@10']:.4f} (clean {same['ndcg@10']:.4f})", flush=True)
    for group, kinds in (("typo (mean)", TYPO_KINDS), ("prefix (mean)", [k for k in KINDS if "prefix" in k])):
        part = [r for r in rows if r["variant"] in kinds]
        if part:
            rows.append(
                {
                    **base,
                    "variant": group,
                    "queries": sum(r["queries"] for r in part),
                    "ndcg@10": round(float(np.mean([r["ndcg@10"] for r in part])), 4),
                    "clean_ndcg@10": round(float(np.mean([r["clean_ndcg@10"] for r in part])), 4),
                    "delta_vs_clean": round(float(np.mean([r["delta_vs_clean"] for r in part])), 4),
                }
            )
    return rows


def _peer(settings: Any) -> Search:
    """OpenSearch's own typo and prefix handling over the combined text field (BM25)."""
    from indexer.opensearch.client import make_client
    from indexer.opensearch.mapping import INDEX_ANALYZER
    from indexer.schema import COMBINED_FIELD

    client = make_client(settings.opensearch_url, timeout=settings.opensearch_timeout_s)

    def search(q: str) -> list[str]:
        body = {
            "size": 100,
            "_source": False,
            "query": {
                "bool": {
                    "should": [
                        {
                            "match": {
                                COMBINED_FIELD: {
                                    "query": q,
                                    "fuzziness": "AUTO",
                                    "prefix_length": 1,
                                    "analyzer": INDEX_ANALYZER,
                                }
                            }
                        },
                        {"match_bool_prefix": {COMBINED_FIELD: {"query": q, "analyzer": INDEX_ANALYZER}}},
                    ],
                    "minimum_should_match": 1,
                }
            },
        }
        resp = client.search(index=settings.index_alias, body=body)
        return [str(h["_id"]) for h in resp["hits"]["hits"]]

    return search


def _with_log(parts: Any, path: Path, qrels: Qrels) -> Any:
    """``parts`` whose rewriter completes with the engaged queries of the UBI log at ``path`` (read
    as the shop's own import), minus every query the judgments hold: only other shoppers' queries
    can help complete a judged one."""
    from indexer.analysis import analyze
    from indexer.events import read_ubi_log
    from ranker.query.rewrite import QueryRewriter
    from ranker.query.suggest import engaged_queries

    log = read_ubi_log(path)
    texts = {q.query_id: q.user_query for q in log.queries if q.query_id and q.user_query}
    engaged = engaged_queries(texts, ((e.query_id, e.client_id, e.action_name, True) for e in log.events))
    judged = {" ".join(analyze(q)) for q in qrels}
    queries = {q: n for q, n in engaged.items() if q not in judged}
    rw = parts.rewriter
    return replace(parts, rewriter=QueryRewriter(rw.lexicon, rw.confirm, types=rw.types, queries=queries))


def _markdown(doc: dict[str, Any]) -> str:
    notes = RunNotes()
    lines = [
        "# Queries as shoppers type them",
        "",
        "nDCG@10 of shopper-style variants of the dev queries, scored with the clean query's judgments "
        "(`bench/typed_queries.py`; unjudged = irrelevant, condensed drops them). Δ clean: the variant "
        "minus the same queries typed cleanly, through the same configuration. Understanding: "
        "`ranker.query` (typo correction, completion of the last word, product type); off = the text "
        "as typed; `type_match 0` = on, with the product-type feature weighed 0; `query log` = on, "
        "completing the word being typed with the engaged queries of the *synthetic* UBI log "
        "(`--query-log`), every judged query removed from it. Type-p@10: share of "
        "the top 10 of the type the clean query names (over the queries naming one, `n`).",
        "",
        "| backend | pipeline | understanding | variant | queries | nDCG@10 | Δ clean | condensed | judged@10 "
        "| type-p@10 (n) | p50 ms | p95 ms | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows_of(doc):

        def f(k: str, r: dict[str, Any] = r) -> str:
            v = r.get(k)
            return "–" if v is None else (f"{v:+.4f}" if k == "delta_vs_clean" else f"{v:.4f}")

        lat = [r.get("latency_ms_p50"), r.get("latency_ms_p95")]
        tp = r.get("type_precision@10")
        tp_cell = "–" if tp is None else f"{tp:.4f} ({r.get('typed_intent_queries')})"
        lines.append(
            f"| {r['backend']} | {r['pipeline']} | {r['understanding']} | {r['variant']} | {r['queries']} "
            f"| {f('ndcg@10')} | {f('delta_vs_clean')} | {f('ndcg_condensed@10')} | {f('judged@10')} "
            f"| {tp_cell} "
            f"| {'–' if lat[0] is None else f'{lat[0]:.1f}'} | {'–' if lat[1] is None else f'{lat[1]:.1f}'} "
            f"| {notes.mark(r)} |"
        )
    return "\n".join([*lines, "", *notes.lines(), ""])


def main(argv: list[str] | None = None) -> int:
    ap = parser("typed_queries", __doc__)
    add_judgments(ap)
    add_out(ap, "typed_queries")
    add_quiet(ap)
    ap.add_argument("--backends", default="embedded", help="comma-separated: embedded, opensearch")
    ap.add_argument("--pipelines", default="bm25,hybrid,full", help="comma-separated registry names")
    ap.add_argument(
        "--query-log",
        type=Path,
        default=None,
        help="a UBI log (e.g. ../shared/data/chorus_icecat/ubi_events_synthetic.zip): adds 'on, query log' "
        "rows for full, completing with its engaged queries, every judged query left out of it",
    )
    args = ap.parse_args(argv)
    this_run = Run.start("typed_queries", argv, args)

    from plugin_api.backends import open_retriever, pipeline_parts
    from plugin_api.settings import Settings
    from ranker.base import SearchOptions, SearchRequest
    from ranker.ranking.pipelines import build_pipeline, check_names

    qrels = load_judgments(args.judgments)
    by_kind: dict[str, list[Variant]] = {}
    for v in variants(sorted(qrels)):
        by_kind.setdefault(v.kind, []).append(v)
    names = check_names([n.strip() for n in args.pipelines.split(",") if n.strip()])
    rows: list[dict[str, Any]] = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        s = Settings(backend=backend)  # type: ignore[arg-type]
        parts = pipeline_parts(s, open_retriever(s), with_reranker=False)
        typing = TypePrecision(parts.rewriter, parts.retriever.backend) if parts.rewriter else None
        for name in names:
            configs = [("off", replace(parts, rewriter=None), None), ("on", parts, None)]
            if name == "full":  # the product-type feature's own share: the same with its weight 0
                configs.append(("on, type_match 0", parts, SearchOptions(weights={"type_match": 0.0})))
            if name == "full" and args.query_log is not None and parts.rewriter is not None:
                configs.append(("on, query log", _with_log(parts, args.query_log, qrels), None))
            for understanding, p, options in configs:
                searcher = build_pipeline(name, p)
                searcher.search(SearchRequest("warm up", k=1, with_products=False))

                def search(q: str, searcher: Any = searcher, options: Any = options) -> list[str]:
                    res = searcher.search(SearchRequest(q, k=100, with_products=False), options)
                    return [h.id for h in res.hits]

                base = {"backend": backend, "pipeline": name, "understanding": understanding}
                rows += _rows(Searched(search), qrels, by_kind, base, args.quiet, typing)
        if backend == "opensearch":
            base = {"backend": backend, "pipeline": PEER, "understanding": "opensearch's"}
            rows += _rows(Searched(_peer(s)), qrels, by_kind, base, args.quiet, typing)
    doc = write_results(args.out, "typed_queries", rows, key=KEY, run=this_run, markdown=_markdown)
    print(_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
