"""README figures for query understanding: typed-query quality and search-as-you-type load."""

from __future__ import annotations

from bench.readme_regions import Doc, Results, f3, source, table

TQ = "typed_queries/typed_queries.json"
TL = "typing_load/typing_load.json"
VARIANTS = ("clean", "typo (mean)", "prefix (mean)", "prefix-0.50")
ROWS = (
    ("embedded", "full"),
    ("embedded", "hybrid"),
    ("opensearch", "full"),
    ("opensearch", "hybrid"),
    ("opensearch", "bm25"),
    ("opensearch", "opensearch fuzzy + match_bool_prefix"),
    ("opensearch (neural-search)", "neural-search hybrid (min_max, mean)"),
    ("opensearch (neural-search)", "neural-search hybrid (rrf 60)"),
)


def _row(rows: list[Doc], backend: str, pipeline: str, understanding: str, variant: str) -> Doc | None:
    for r in rows:
        if (r["backend"], r["pipeline"], r["understanding"], r["variant"]) == (
            backend,
            pipeline,
            understanding,
            variant,
        ):
            return r
    return None


def typed_queries(res: Results) -> str:
    d = res(TQ)
    rows = list(d["rows"])
    used: dict[str, Doc] = {}
    lines = []
    for backend, pipeline in ROWS:
        for understanding in ("off", "on", "on, type_match 0", "opensearch's"):
            found = [_row(rows, backend, pipeline, understanding, v) for v in VARIANTS]
            got = [r for r in found if r is not None]
            if len(got) < len(VARIANTS):
                continue
            for v, r in zip(VARIANTS, got, strict=True):
                used[f"{backend} {pipeline} {understanding} {v}"] = r
            clean, typo, pre, half = got
            lines.append(
                [
                    f"{backend} · {pipeline}",
                    understanding,
                    f3(clean["ndcg@10"]),
                    f"{f3(typo['ndcg@10'])} ({typo['delta_vs_clean']:+.3f})",
                    f"{f3(pre['ndcg@10'])} ({pre['delta_vs_clean']:+.3f})",
                    f"{f3(half['ndcg@10'])} ({half['delta_vs_clean']:+.3f})",
                    "–"
                    if clean.get("type_precision@10") is None
                    else f"{f3(clean['type_precision@10'])} ({clean['typed_intent_queries']})",
                ]
            )
    head = (
        f"Queries as typed ({source(TQ, d, used)}): the 100 dev queries with one edit in their longest word "
        "(transposition, deletion, insertion, neighbouring key; the mean of the four kinds) and with their last "
        "word cut to 34 / 50 / 67 % of its letters (the mean of the three cuts, and the 50 % cut alone), scored "
        "with the clean query's judgments; in brackets the change against the same queries typed cleanly through "
        "the same configuration (latency: the `wrk` figures below; the JSON's in-process latencies were taken while "
        "other jobs shared the machine). `understanding` off = the text as "
        "typed; `type_match 0` = on, with the product-type feature weighed 0; type-p@10: the share of the clean "
        "query's top 10 of the product type it names, over the n queries naming one; the peer rows are OpenSearch's own `fuzziness: AUTO` + `match_bool_prefix` (BM25 only: compare with "
        "`bm25`) and OpenSearch's own hybrid search (the neural-search plugin's `hybrid` query with its "
        "normalization or score-ranker processor, on a second node: `bench.peer_hybrid`; compare with `hybrid`):\n\n"
    )
    text = head + table(
        [
            "backend · pipeline",
            "understanding",
            "clean nDCG@10",
            "typo",
            "prefix",
            "prefix 50 %",
            "type-p@10 (n)",
        ],
        lines,
    )
    load = res(TL)
    lr = {f"{r['scenario']} ×{r['connections']}": r for r in load["rows"]}
    parts = [
        f"{name.split(' ')[0]} at {r['connections']} connection{'s' if r['connections'] > 1 else ''} "
        f"{r['rps']:.0f} req/s, p50 / p95 {r['p50_ms']:.1f} / {r['p95_ms']:.1f} ms"
        for name, r in lr.items()
    ]
    return text + (
        f"\n\nUnder `wrk` on loopback ({source(TL, load, lr)}; every keystroke of the dev queries; wrk and the "
        f"single service process share the two cores): " + "; ".join(parts) + "."
    )
