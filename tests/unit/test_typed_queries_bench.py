"""bench.typed_queries' query-log rows: the log completes words, but never with a judged query."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench.typed_queries import _with_log
from indexer.analysis import raw_tokens
from ranker.query.lexicon import Lexicon
from ranker.query.rewrite import QueryRewriter


@dataclass(frozen=True)
class Parts:
    rewriter: QueryRewriter


def _log(tmp_path, queries):
    lines = []
    for i, (text, clients) in enumerate(queries):
        for c in clients:
            q = {"query_id": f"q{i}{c}", "client_id": c, "user_query": text, "timestamp": 1717527761998}
            e = {"action_name": "click", "client_id": c, "query_id": f"q{i}{c}", "timestamp": 1717527762000}
            lines += [f"ubi_queries\t{json.dumps(q)}", f"ubi_events\t{json.dumps(e)}"]
    path = tmp_path / "ubi.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_query_log_rows_leave_every_judged_query_out(tmp_path):
    titles = [f"Acme L{n}0 labels" for n in range(30)] + [f"Acme N{n}0 laptop" for n in range(5)]
    lexicon = Lexicon.from_documents(([raw_tokens(t)], []) for t in titles)
    parts = Parts(QueryRewriter(lexicon))
    qrels = {"Laptop": {"d1": 3}}
    judged_only = _with_log(parts, _log(tmp_path, [("laptop", ["a", "b", "c"])]), qrels)
    assert judged_only.rewriter.rewrite("la").query == "labels"  # the judged query itself is left out
    other = _with_log(parts, _log(tmp_path, [("laptop", ["a"]), ("laptop bag", ["a", "b", "c"])]), qrels)
    assert other.rewriter.rewrite("la").query == "laptop"  # another shopper query that names it helps
