"""OpenSearch's own hybrid search as a peer: the neural-search plugin's ``hybrid`` query on our node.

Needs the peer node (``scripts/opensearch peer start``: the same OpenSearch 2.19.1 + k-NN with
``org.opensearch.plugin:neural-search:2.19.1.0`` from Maven Central, on :9250, no ml-commons).
Indexes the Chorus catalog there with ``shoprank index`` (alias ``shoprank-peer``, our mapping and
MiniLM vectors), creates two search pipelines —

* ``peer-minmax``: ``normalization-processor``, ``min_max`` + ``arithmetic_mean`` (equal weights),
* ``peer-rrf``: ``score-ranker-processor``, ``rrf`` with rank constant 60,

— and runs each ``hybrid`` query (our BM25 ``multi_match`` on the combined field, and ``knn`` with
the query's MiniLM vector, both top 100) over the dev queries and the same shopper-style variants
as ``bench.typed_queries``. The text goes in as typed: neural-search has no typo or prefix handling
of its own. Rows merge into ``OUT/typed_queries.json`` (backend ``opensearch (neural-search)``),
beside shoprank's rows measured on the main node.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from bench.common import CHORUS, REPO, Run, add_judgments, add_out, add_quiet, parser, write_results
from bench.typed_queries import KEY, KINDS, Searched, _markdown, _rows
from ranker.evaluation.relevance import load_judgments
from ranker.evaluation.typed_variants import Variant, variants

ALIAS = "shoprank-peer"
PIPELINES = {
    "peer-minmax": {
        "description": "neural-search: min-max normalisation, arithmetic mean",
        "phase_results_processors": [
            {
                "normalization-processor": {
                    "normalization": {"technique": "min_max"},
                    "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.5, 0.5]}},
                }
            }
        ],
    },
    "peer-rrf": {
        "description": "neural-search: reciprocal rank fusion",
        "phase_results_processors": [
            {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}
        ],
    },
}
NAMES = {"peer-minmax": "neural-search hybrid (min_max, mean)", "peer-rrf": "neural-search hybrid (rrf 60)"}


def _index(url: str, quiet: bool) -> None:
    cmd = [sys.executable, "-m", "plugin_api.cli", "index", "--backend", "opensearch"]
    cmd += ["--opensearch-url", url, "--index-alias", ALIAS, "--catalog", str(CHORUS)]
    if quiet:
        cmd.append("--quiet")
    subprocess.run(cmd, cwd=REPO, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = parser("peer_hybrid", __doc__)
    add_judgments(ap)
    add_out(ap, "typed_queries")
    add_quiet(ap)
    ap.add_argument(
        "--url", default="http://127.0.0.1:9250", help="the peer node (scripts/opensearch peer url)"
    )
    ap.add_argument("--no-index", action="store_true", help="the peer index is already built")
    args = ap.parse_args(argv)
    this_run = Run.start("peer_hybrid", argv, args)

    from indexer.opensearch.client import make_client
    from indexer.opensearch.mapping import INDEX_ANALYZER
    from indexer.schema import COMBINED_FIELD, VECTOR_FIELD
    from plugin_api.backends import embedder_from
    from plugin_api.settings import Settings

    client = make_client(args.url, timeout=60)
    plugins = {p["component"] for p in client.cat.plugins(format="json")}
    if not any("neural-search" in p for p in plugins):
        ap.error(
            f"no neural-search plugin on {args.url} ({sorted(plugins)}); start it: scripts/opensearch peer start"
        )
    if not args.no_index:
        _index(args.url, args.quiet)
    for name, body in PIPELINES.items():
        client.transport.perform_request("PUT", f"/_search/pipeline/{name}", body=body)
    embedder = embedder_from(Settings())
    qrels = load_judgments(args.judgments)
    by_kind: dict[str, list[Variant]] = {}
    for v in variants(sorted(qrels)):
        by_kind.setdefault(v.kind, []).append(v)
    assert set(by_kind) <= set(KINDS)
    rows: list[dict[str, Any]] = []
    for pipeline, label in NAMES.items():

        def search(q: str, pipeline: str = pipeline) -> list[str]:
            vec = [float(x) for x in embedder.encode([q])[0]]
            body = {
                "size": 100,
                "_source": False,
                "query": {
                    "hybrid": {
                        "queries": [
                            {"match": {COMBINED_FIELD: {"query": q, "analyzer": INDEX_ANALYZER}}},
                            {"knn": {VECTOR_FIELD: {"vector": vec, "k": 100}}},
                        ]
                    }
                },
            }
            resp = client.search(index=ALIAS, body=body, params={"search_pipeline": pipeline})
            return [str(h["_id"]) for h in resp["hits"]["hits"]]

        base = {"backend": "opensearch (neural-search)", "pipeline": label, "understanding": "off"}
        rows += _rows(Searched(search), qrels, by_kind, base, args.quiet)
    doc = write_results(args.out, "typed_queries", rows, key=KEY, run=this_run, markdown=_markdown)
    print(_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
