"""The exact requests the OpenSearch store and backend send, against a recording fake node."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from opensearchpy import Connection, OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import ConnectionTimeout

from indexer.analysis import Synonyms
from indexer.base import DocError
from indexer.errors import BackendUnavailableError, BadInputError, NotFoundError
from indexer.manifest import Manifest
from indexer.opensearch.client import START_HINT, client_url, make_client
from indexer.opensearch.mapping import index_body
from indexer.opensearch.store import OpenSearchStore
from indexer.product import Product
from indexer.schema import DEFAULT_FIELD_BOOSTS, document
from ranker.base import Filters, Scored
from ranker.retrieval.opensearch import OpenSearchBackend

NODE = "http://fake-node:9200"
ALIAS = "shoprank-products"
NEW = "shoprank-products-v20240102030405678"
OLD = "shoprank-products-v20231201000000000"
OLDER = "shoprank-products-v20231101000000000"
FIELDS = ["all_text^1"]
INJECTION = 'title:foo OR *:* {"match_all":{}}'


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, Any]
    body: Any
    raw: str | None


Reply = tuple[int, Any] | Callable[[Call], tuple[int, Any]] | Exception


class FakeNode:
    """Records every request; answers from (method, path regex) → replies, used in turn (the last repeats)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.routes: list[tuple[str, re.Pattern[str], list[Reply]]] = []

    def on(self, method: str, path: str, *replies: Reply) -> FakeNode:
        self.routes.insert(0, (method, re.compile(f"^{path}$"), list(replies)))  # the latest route wins
        return self

    def handle(self, call: Call) -> tuple[int, Any]:
        self.calls.append(call)
        for method, pattern, replies in self.routes:
            if method == call.method and pattern.match(call.path):
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                if isinstance(reply, Exception):
                    raise reply
                return reply(call) if callable(reply) else reply
        raise AssertionError(f"unexpected request {call.method} {call.path}")

    def requests(self) -> list[tuple[str, str]]:
        return [(c.method, c.path) for c in self.calls]


class FakeConnection(Connection):
    def __init__(
        self, host: str = "localhost", port: int | None = None, node: FakeNode | None = None, **kw: Any
    ):
        kw.pop("metrics", None)
        super().__init__(host=host, port=port, **kw)
        assert node is not None
        self.node = node

    def perform_request(self, method, url, params=None, body=None, timeout=None, ignore=(), headers=None):
        raw = body.decode("utf-8") if isinstance(body, bytes) else body
        if raw is None:
            parsed = None
        elif url.endswith(("/_bulk", "/_msearch")):
            parsed = [json.loads(line) for line in raw.splitlines() if line]
        else:
            parsed = json.loads(raw)
        params = {k: v.decode() if isinstance(v, bytes) else v for k, v in (params or {}).items()}
        status, payload = self.node.handle(Call(method, url, params, parsed, raw))
        data = json.dumps(payload)
        if not 200 <= status < 300 and status not in ignore:
            self._raise_error(status, data, "application/json")
        return status, {"content-type": "application/json"}, data


def fake_client(node: FakeNode) -> OpenSearch:
    return OpenSearch(hosts=[{"host": "fake-node", "port": 9200}], connection_class=FakeConnection, node=node)


def manifest(dimension: int = 4, documents: int = 3) -> Manifest:
    return Manifest(
        kind="opensearch",
        model_id="test-model",
        dimension=dimension,
        catalog_hash="abc",
        documents=documents,
        analyzer_version=1,
        created_at="2024-01-02T03:04:05+00:00",
    )


PRODUCTS = [
    Product(
        "a", "Lenovo ThinkPad notebook", "Business laptop", "Lenovo", "Computers", 999.0, {"ram": "16 GB"}
    ),
    Product("b", "HP LaserJet printer", brand="HP", price=199.5, in_stock=False, ean=("0123456789012",)),
    Product("c", "Café espresso machine", brand="Philips", date_released="2021-05-01"),
]
VECTORS = np.array([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5], [0.0, 0.25, 0.0, -1.0]], dtype=np.float32)


def bulk_ok(call: Call) -> tuple[int, Any]:
    items = []
    for line in call.body:
        op = next(iter(line))
        if op in ("index", "delete"):
            items.append(
                {op: {"_id": line[op]["_id"], "status": 201 if op == "index" else 200, "result": "ok"}}
            )
    return 200, {"took": 1, "errors": False, "items": items}


def build_node(alias_reply: tuple[int, Any] | None = None, versions: list[str] | None = None) -> FakeNode:
    node = FakeNode()
    existing = {name: {"aliases": {}} for name in versions or [OLDER, OLD]}
    after = {**existing, NEW: {"aliases": {ALIAS: {"is_write_index": True}}}}
    node.on("GET", f"/{ALIAS}-v\\*/_alias", (200, existing), (200, after))
    node.on("PUT", f"/{NEW}", (200, {"acknowledged": True, "index": NEW}))
    node.on("POST", f"/{NEW}/_bulk", bulk_ok)
    node.on("POST", f"/{NEW}/_refresh", (200, {"_shards": {"failed": 0}}))
    node.on("POST", f"/{NEW}/_count", (200, {"count": 3}))
    node.on("GET", f"/{NEW}/_count", (200, {"count": 3}))
    node.on(
        "GET", f"/_alias/{ALIAS}", alias_reply or (200, {OLD: {"aliases": {ALIAS: {"is_write_index": True}}}})
    )
    node.on("POST", "/_aliases", (200, {"acknowledged": True}))
    node.on("DELETE", "/.*", (200, {"acknowledged": True}))
    node.on("HEAD", f"/{ALIAS}-updates", (404, {}))  # no API writes to carry over
    return node


def make_store(node: FakeNode, **kw: Any) -> OpenSearchStore:
    clock = lambda: datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)  # noqa: E731
    return OpenSearchStore(fake_client(node), ALIAS, chunk_size=2, clock=clock, **kw)


# -- index body -----------------------------------------------------------------------------------
def test_index_body_exact() -> None:
    analyzer = {"analyzer": "shoprank_text", "search_analyzer": "shoprank_search", "type": "text"}
    keyword = {"keyword": {"type": "keyword", "ignore_above": 256}}
    expected = {
        "settings": {
            "index": {"number_of_shards": 1, "auto_expand_replicas": "0-1", "knn": True},
            "analysis": {
                "filter": {
                    "shoprank_possessive": {"type": "stemmer", "language": "possessive_english"},
                    "shoprank_minimal_english": {"type": "stemmer", "language": "minimal_english"},
                    "shoprank_synonyms": {"type": "synonym_graph", "synonyms": Synonyms.default().rules()},
                },
                "analyzer": {
                    "shoprank_text": {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": [
                            "lowercase",
                            "asciifolding",
                            "shoprank_possessive",
                            "shoprank_minimal_english",
                        ],
                    },
                    "shoprank_search": {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": [
                            "lowercase",
                            "asciifolding",
                            "shoprank_possessive",
                            "shoprank_minimal_english",
                            "shoprank_synonyms",
                        ],
                    },
                },
                "normalizer": {
                    "shoprank_lowercase": {"type": "custom", "char_filter": [], "filter": ["lowercase"]}
                },
            },
        },
        "mappings": {
            "dynamic": "strict",
            "_meta": {"shoprank": manifest().to_dict()},
            "properties": {
                "id": {"type": "keyword"},
                "title": {**analyzer, "fields": keyword, "copy_to": "all_text"},
                "name": {**analyzer, "fields": keyword, "copy_to": "all_text"},
                "brand": {
                    **analyzer,
                    "fields": {**keyword, "filter": {"type": "keyword", "normalizer": "shoprank_lowercase"}},
                    "copy_to": "all_text",
                },
                "category": {**analyzer, "fields": keyword, "copy_to": "all_text"},
                "description": {**analyzer, "copy_to": "all_text"},
                "attributes_text": analyzer,
                "all_text": analyzer,
                "ean": {"type": "keyword"},
                "price": {"type": "double"},
                "in_stock": {"type": "boolean"},
                "image_url": {"type": "keyword", "index": False, "doc_values": False},
                "date_released": {
                    "type": "date",
                    "format": "strict_date_optional_time||yyyy-MM-dd||yyyy-MM||yyyy||epoch_millis",
                    "ignore_malformed": True,
                },
                "attributes": {"type": "object", "enabled": False},
                "reviews": {
                    "type": "object",
                    "properties": {
                        "count": {"type": "integer"},
                        "sentiment_sum": {"type": "double"},
                        "rating_count": {"type": "integer"},
                        "rating_sum": {"type": "double"},
                        "sentiment": {"type": "float"},
                        "rating": {"type": "float"},
                    },
                },
                "embedding": {
                    "type": "knn_vector",
                    "dimension": 4,
                    "method": {
                        "name": "hnsw",
                        "engine": "lucene",
                        "space_type": "cosinesimil",
                        "parameters": {"m": 16, "ef_construction": 128},
                    },
                },
            },
        },
    }
    assert index_body(4, manifest()) == expected
    # replicas unset: one on a cluster, none on a single node; or exactly as many as asked
    assert index_body(4, manifest(), shards=3, replicas=1)["settings"]["index"] == {
        "number_of_shards": 3,
        "number_of_replicas": 1,
        "knn": True,
    }
    assert "laptop, notebook" in Synonyms.default().rules()
    with pytest.raises(BadInputError):
        index_body(5, manifest())


# -- build ----------------------------------------------------------------------------------------
def test_build_sends_create_bulk_swap_and_prune() -> None:
    node = build_node()
    report = make_store(node).build(PRODUCTS, VECTORS, manifest())
    assert report.ok and report.indexed == 3 and report.target == NEW
    assert node.requests() == [
        ("GET", f"/{ALIAS}-v*/_alias"),
        ("PUT", f"/{NEW}"),
        ("POST", f"/{NEW}/_bulk"),
        ("POST", f"/{NEW}/_bulk"),
        ("HEAD", f"/{ALIAS}-updates"),  # the update log to replay before the swap
        ("POST", f"/{NEW}/_refresh"),
        ("POST", f"/{NEW}/_count"),
        ("GET", f"/_alias/{ALIAS}"),
        ("POST", "/_aliases"),
        ("HEAD", f"/{ALIAS}-updates"),  # and what was written to it meanwhile
        ("GET", f"/{ALIAS}-v*/_alias"),
        ("DELETE", f"/{OLDER}"),
    ]
    assert node.calls[1].body == index_body(4, manifest())
    bulk = node.calls[2].body + node.calls[3].body
    assert bulk == [
        {"index": {"_id": "a"}},
        document(PRODUCTS[0], VECTORS[0]),
        {"index": {"_id": "b"}},
        document(PRODUCTS[1], VECTORS[1]),
        {"index": {"_id": "c"}},
        document(PRODUCTS[2], VECTORS[2]),
    ]
    assert bulk[1]["embedding"] == [1.0, 0.0, 0.0, 0.0] and bulk[5]["embedding"] == [0.0, 0.25, 0.0, -1.0]
    assert next(c for c in node.calls if c.path == "/_aliases").body == {
        "actions": [
            {"remove": {"index": OLD, "alias": ALIAS}},
            {"add": {"index": NEW, "alias": ALIAS, "is_write_index": True}},
        ]
    }


def test_first_build_adds_alias_and_keeps_everything_with_keep_old_2() -> None:
    node = build_node(
        alias_reply=(404, {"error": "alias [shoprank-products] missing", "status": 404}), versions=[]
    )
    assert make_store(node, keep_old=2).build(PRODUCTS, VECTORS, manifest()).ok
    swap = next(c for c in node.calls if c.path == "/_aliases")
    assert swap.body == {"actions": [{"add": {"index": NEW, "alias": ALIAS, "is_write_index": True}}]}
    assert not [c for c in node.calls if c.method == "DELETE"]


def test_failed_document_is_reported_and_alias_untouched() -> None:
    node = build_node()

    def one_fails(call: Call) -> tuple[int, Any]:
        status, resp = bulk_ok(call)
        for item in resp["items"]:
            if item["index"]["_id"] == "b":
                item["index"].update(
                    status=400,
                    error={"type": "mapper_parsing_exception", "reason": "failed to parse field [price]"},
                )
        resp["errors"] = True
        return status, resp

    node.on("POST", f"/{NEW}/_bulk", one_fails)
    report = make_store(node).build(PRODUCTS, VECTORS, manifest())
    assert not report.ok and report.indexed == 2
    assert report.errors == [DocError("b", "mapper_parsing_exception: failed to parse field [price]")]
    assert ("POST", "/_aliases") not in node.requests()
    assert node.requests()[-1] == ("DELETE", f"/{NEW}")


def test_wrong_dimension_or_duplicates_refused_before_any_request() -> None:
    node = build_node()
    store = make_store(node)
    with pytest.raises(BadInputError, match="dimension 5"):
        store.build(PRODUCTS, np.ones((3, 5), dtype=np.float32), manifest())
    with pytest.raises(BadInputError, match="one vector per product"):
        store.build(PRODUCTS, VECTORS[:2], manifest())
    with pytest.raises(BadInputError, match="more than once"):
        store.build([PRODUCTS[0], PRODUCTS[0], PRODUCTS[1]], VECTORS, manifest())
    assert node.calls == []


def test_node_dying_mid_build_raises_unavailable_and_cleans_up() -> None:
    node = build_node()
    node.on("POST", f"/{NEW}/_bulk", OSConnectionError("N/A", "refused", OSError()))
    with pytest.raises(BackendUnavailableError, match=re.escape(START_HINT)):
        make_store(node).build(PRODUCTS, VECTORS, manifest())
    assert ("POST", "/_aliases") not in node.requests()
    assert node.requests()[-1] == ("DELETE", f"/{NEW}")


def test_swap_that_timed_out_but_happened_is_a_success() -> None:
    node = build_node()
    moved = {NEW: {"aliases": {ALIAS: {"is_write_index": True}}}}
    node.on(
        "GET", f"/_alias/{ALIAS}", (200, {OLD: {"aliases": {ALIAS: {"is_write_index": True}}}}), (200, moved)
    )
    node.on("POST", "/_aliases", ConnectionTimeout("TIMEOUT", "timed out", None))
    assert make_store(node).build(PRODUCTS, VECTORS, manifest()).ok
    assert ("DELETE", f"/{NEW}") not in node.requests()


def test_failed_swap_deletes_the_new_index_and_raises() -> None:
    node = build_node()
    node.on("POST", "/_aliases", (503, {"error": {"type": "cluster_block_exception"}}))
    with pytest.raises(BackendUnavailableError, match="moving alias"):
        make_store(node).build(PRODUCTS, VECTORS, manifest())
    assert node.requests()[-1] == ("DELETE", f"/{NEW}")


# -- single changes ---------------------------------------------------------------------------------
def live_node() -> FakeNode:
    node = FakeNode()
    node.on("GET", f"/_alias/{ALIAS}", (200, {OLD: {"aliases": {ALIAS: {"is_write_index": True}}}}))
    node.on(
        "GET", f"/{OLD}/_mapping", (200, {OLD: {"mappings": {"_meta": {"shoprank": manifest().to_dict()}}}})
    )
    node.on("POST", f"/{ALIAS}/_bulk", bulk_ok)
    node.on("HEAD", f"/{ALIAS}-updates", (200, {}))
    node.on("POST", f"/{ALIAS}-updates/_bulk", bulk_ok)
    return node


def test_upsert_goes_through_the_alias_and_waits_for_refresh() -> None:
    node = live_node()
    report = make_store(node).upsert(PRODUCTS[:1], VECTORS[:1])
    assert report.ok and report.indexed == 1
    bulk = node.calls[-1]
    assert bulk.path == f"/{ALIAS}/_bulk" and bulk.params == {"refresh": "wait_for"}
    assert bulk.body == [{"index": {"_id": "a"}}, document(PRODUCTS[0], VECTORS[0])]
    with pytest.raises(BadInputError, match="dimension"):
        make_store(node).upsert(PRODUCTS[:1], np.ones((1, 3), dtype=np.float32))


def test_writes_go_to_the_update_log_first() -> None:
    node = live_node()
    make_store(node).upsert(PRODUCTS[:1], VECTORS[:1])
    logged, live = [c for c in node.calls if c.path.endswith("/_bulk")]
    assert logged.path == f"/{ALIAS}-updates/_bulk" and "refresh" not in logged.params
    assert live.path == f"/{ALIAS}/_bulk"
    entry = logged.body[1]
    assert logged.body[0] == {"index": {"_id": "a"}} and entry["op"] == "upsert"
    assert (entry["model"], entry["dim"]) == ("test-model", 4)
    assert entry["doc"] == {"product": PRODUCTS[0].to_dict(), "vector": [1.0, 0.0, 0.0, 0.0]}
    node.calls.clear()
    make_store(node).delete(["a", "a"])
    logged, live = [c for c in node.calls if c.path.endswith("/_bulk")]
    assert logged.body[0] == {"index": {"_id": "a"}} and logged.body[1]["op"] == "delete"
    assert live.body == [{"delete": {"_id": "a"}}]


def test_delete_reports_missing_ids() -> None:
    node = live_node()

    def answer(call: Call) -> tuple[int, Any]:
        items = [{"delete": {"_id": "a", "status": 200, "result": "deleted"}}]
        items.append({"delete": {"_id": "zzz", "status": 404, "result": "not_found"}})
        return 200, {"errors": False, "items": items}

    node.on("POST", f"/{ALIAS}/_bulk", answer)
    report = make_store(node).delete(["a", "zzz"])
    assert report.deleted == 1 and report.errors == [DocError("zzz", "not found")]
    assert node.calls[-1].body == [{"delete": {"_id": "a"}}, {"delete": {"_id": "zzz"}}]


def test_manifest_round_trip_and_missing_alias() -> None:
    assert make_store(live_node()).manifest() == manifest()
    node = FakeNode().on("GET", f"/_alias/{ALIAS}", (404, {"error": "alias missing", "status": 404}))
    store = make_store(node)
    assert store.manifest() is None and store.current_index() is None
    with pytest.raises(NotFoundError, match="shoprank index"):
        store.delete(["a"])


# -- search -----------------------------------------------------------------------------------------
def search_node(*hits: tuple[str, float]) -> FakeNode:
    answer = {"hits": {"hits": [{"_id": i, "_score": s} for i, s in hits]}}
    return FakeNode().on("POST", f"/{ALIAS}/_search", (200, answer))


FILTERS = Filters(brands=("HP", "Lenovo"), price_min=10.0, price_max=500.0, in_stock=True)
FILTER_DSL = [
    {"terms": {"brand.filter": ["hp", "lenovo"]}},
    {"range": {"price": {"gte": 10.0, "lte": 500.0}}},
    {
        "bool": {
            "should": [
                {"term": {"in_stock": True}},
                {"bool": {"must_not": [{"exists": {"field": "in_stock"}}]}},
            ],
            "minimum_should_match": 1,
        }
    },
]


def multi_match(query: str, fields: list[str] = FIELDS) -> list[dict[str, Any]]:
    """The two lexical clauses: as typed (index analyzer) + synonym-expanded at boost 0.3."""
    plain = {
        "query": query,
        "type": "most_fields",
        "fields": fields,
        "operator": "or",
        "analyzer": "shoprank_text",
    }
    syn = {**plain, "analyzer": "shoprank_search", "boost": 0.3}
    return [{"multi_match": plain}, {"multi_match": syn}]


def lexical(query: str, fields: list[str] = FIELDS, **extra: Any) -> dict[str, Any]:
    return {"bool": {"should": multi_match(query, fields), "minimum_should_match": 1, **extra}}


def test_lexical_request_and_scores() -> None:
    node = search_node(("b", 7.5), ("a", 1.25))
    backend = OpenSearchBackend(fake_client(node))
    assert backend.lexical("laptop", 10, FILTERS) == [Scored("b", 7.5), Scored("a", 1.25)]
    assert node.calls[0].body == {
        "size": 10,
        "_source": False,
        "track_total_hits": False,
        "query": lexical("laptop", filter=FILTER_DSL),
    }
    backend.lexical("x", 3, Filters())
    assert node.calls[1].body["query"] == lexical("x")
    assert len(FIELDS) == len(DEFAULT_FIELD_BOOSTS)


def test_expansions_are_weighted_should_clauses_of_the_same_multi_match() -> None:
    node = search_node(("b", 3.0))
    backend = OpenSearchBackend(fake_client(node))
    backend.lexical("laptop ca", 10, Filters(), (("case", 0.5), ("cable", 0.5), ("!!", 0.5)))
    expansion = {
        "query": "case",
        "type": "most_fields",
        "fields": FIELDS,
        "operator": "or",
        "analyzer": "shoprank_text",
        "boost": 0.5,
    }
    should = node.calls[0].body["query"]["bool"]["should"]
    # the query's two clauses, then one per expansion with a term (the punctuation-only one is dropped)
    assert should == [
        *multi_match("laptop ca"),
        {"multi_match": expansion},
        {"multi_match": {**expansion, "query": "cable"}},
    ]
    # the same clauses score the products a hybrid search fills in
    backend.lexical_scores("laptop ca", ["b"], (("case", 0.5),))
    assert node.calls[1].body["query"]["bool"]["should"] == [
        *multi_match("laptop ca"),
        {"multi_match": expansion},
    ]


def strict_term(term: str) -> dict[str, Any]:
    """One required term of the strict keyword leg: its best field's BM25, no synonyms."""
    fields = ["title", "name", "brand", "category", "description", "attributes_text"]
    return {
        "dis_max": {
            "queries": [
                {"match": {f: {"query": term, "operator": "and", "analyzer": "shoprank_text"}}}
                for f in fields
            ]
        }
    }


def test_strict_lexical_request_requires_every_analyzed_term() -> None:
    node = search_node(("b", 9.0), ("a", 4.5))
    backend = OpenSearchBackend(fake_client(node))
    assert backend.strict_lexical("Laptops HP laptop", 40, FILTERS) == [Scored("b", 9.0), Scored("a", 4.5)]
    assert node.calls[0].body == {
        "size": 40,
        "_source": False,
        "track_total_hits": False,
        "query": {"bool": {"must": [strict_term("laptop"), strict_term("hp")], "filter": FILTER_DSL}},
    }
    # Query syntax is data: the words become match values, nothing else.
    backend.strict_lexical(INJECTION, 5, Filters())
    terms = ["title", "foo", "or", "match_all"]
    assert node.calls[1].body["query"] == {"bool": {"must": [strict_term(t) for t in terms]}}
    # A query without a single term asks nothing.
    assert backend.strict_lexical("*:* !!", 5, Filters()) == [] and len(node.calls) == 2


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [k, *_strings(v)]]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


def test_query_syntax_is_only_the_multi_match_query_string() -> None:
    node = search_node()
    OpenSearchBackend(fake_client(node)).lexical(INJECTION, 5, Filters())
    body = node.calls[0].body
    assert [c["multi_match"]["query"] for c in body["query"]["bool"]["should"]] == [INJECTION, INJECTION]
    strings = _strings(body)
    assert [s for s in strings if "foo" in s or "match_all" in s] == [INJECTION, INJECTION]
    assert not {"query_string", "simple_query_string", "match_all"} & set(strings)
    assert node.calls[0].raw.count("title:foo") == 2


def test_knn_request_filters_inside_and_scores_become_cosines() -> None:
    node = search_node(("a", 1.0), ("c", 0.75), ("b", 0.25))
    backend = OpenSearchBackend(fake_client(node))
    got = backend.knn(np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32), 3, FILTERS)
    assert got == [Scored("a", 1.0), Scored("c", 0.5), Scored("b", -0.5)]
    assert node.calls[0].body == {
        "size": 3,
        "_source": False,
        "track_total_hits": False,
        "query": {
            "knn": {
                "embedding": {
                    "vector": [0.5, 0.5, 0.5, 0.5],
                    "k": 3,
                    "method_parameters": {"ef_search": 256},
                    "filter": {"bool": {"filter": FILTER_DSL}},
                }
            }
        },
    }
    assert backend.knn(np.zeros(4, dtype=np.float32), 3, Filters()) == []
    assert len(node.calls) == 1


def test_hybrid_is_one_msearch() -> None:
    answer = {
        "responses": [
            {"status": 200, "hits": {"hits": [{"_id": "a", "_score": 3.0}]}},
            {"status": 200, "hits": {"hits": [{"_id": "b", "_score": 0.9}]}},
        ]
    }
    node = FakeNode().on("POST", f"/{ALIAS}/_msearch", (200, answer))
    backend = OpenSearchBackend(fake_client(node), field_boosts={"title": 2.0, "brand": 1.0})
    vec = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    bm25, knn = backend.hybrid("hp", vec, 2, Filters(brands=("HP",)))
    assert bm25 == [Scored("a", 3.0)] and knn[0].id == "b" and knn[0].score == pytest.approx(0.8)
    flt = [{"terms": {"brand.filter": ["hp"]}}]
    mm = lexical("hp", ["title^2", "brand^1"], filter=flt)
    assert node.requests() == [("POST", f"/{ALIAS}/_msearch")]
    assert node.calls[0].body == [
        {},
        {
            "size": 2,
            "_source": False,
            "track_total_hits": False,
            "query": mm,
        },
        {},
        {
            "size": 2,
            "_source": False,
            "track_total_hits": False,
            "query": {
                "knn": {
                    "embedding": {
                        "vector": [1.0, 0.0, 0.0, 0.0],
                        "k": 2,
                        "method_parameters": {"ef_search": 256},
                        "filter": {"bool": {"filter": flt}},
                    }
                }
            },
        },
    ]


@pytest.mark.parametrize(("status", "error"), [(503, BackendUnavailableError), (404, NotFoundError)])
def test_hybrid_item_errors_are_domain_errors(status: int, error: type[Exception]) -> None:
    item = {"status": status, "error": {"type": "some_exception", "reason": "boom"}}
    node = FakeNode().on("POST", f"/{ALIAS}/_msearch", (200, {"responses": [item, item]}))
    with pytest.raises(error):
        OpenSearchBackend(fake_client(node)).hybrid("hp", np.ones(4, dtype=np.float32), 2, Filters())


def test_lexical_scores_restricts_to_ids() -> None:
    node = search_node(("b", 2.0))
    scores = OpenSearchBackend(fake_client(node)).lexical_scores("printer", ["b", "c", "b"])
    assert scores == {"b": 2.0}
    assert node.calls[0].body == {
        "size": 2,
        "_source": False,
        "track_total_hits": False,
        "query": lexical("printer", filter=[{"ids": {"values": ["b", "c"]}}]),
    }


def test_vectors_and_fetch_use_mget() -> None:
    vec_docs = {"docs": [{"_id": "a", "found": True, "_source": {"embedding": [1.0, 0.0, 0.0, 0.0]}}]}
    vec_docs["docs"].append({"_id": "nope", "found": False})
    doc = document(PRODUCTS[1])
    node = FakeNode().on(
        "POST",
        f"/{ALIAS}/_mget",
        (200, vec_docs),
        (200, {"docs": [{"_id": "b", "found": True, "_source": doc}, {"_id": "x", "found": False}]}),
    )
    backend = OpenSearchBackend(fake_client(node))
    vecs = backend.vectors(["a", "nope"])
    assert list(vecs) == ["a"] and vecs["a"].dtype == np.float32
    assert node.calls[0].body == {"ids": ["a", "nope"]} and node.calls[0].params == {
        "_source_includes": "embedding"
    }
    assert backend.fetch(["b", "x"]) == {"b": PRODUCTS[1]}
    assert node.calls[1].params == {"_source_excludes": "embedding"}
    assert backend.fetch([]) == {} and len(node.calls) == 2


def test_fetch_and_vectors_read_each_source_once_per_document_version() -> None:
    """With the record cache, a fetch asks the node for the documents' versions only (no
    sources) and reads the sources of the ones it does not hold at that version: a product
    written since (its _seq_no moved) is read again, one deleted is gone."""
    b_doc = document(PRODUCTS[1], [0.0, 1.0, 0.0, 0.0])
    c_doc = document(PRODUCTS[2], [0.0, 0.0, 1.0, 0.0])

    def head(pid: str, seq: int) -> dict:
        return {"_id": pid, "found": True, "_primary_term": 1, "_seq_no": seq}

    def full(pid: str, seq: int, src: dict) -> dict:
        return {**head(pid, seq), "_source": src}

    node = FakeNode().on(
        "POST",
        f"/{ALIAS}/_mget",
        (200, {"docs": [head("b", 3), head("c", 4), {"_id": "x", "found": False}]}),
        (200, {"docs": [full("b", 3, b_doc), full("c", 4, c_doc)]}),
        (200, {"docs": [head("b", 3), head("c", 4)]}),
        (200, {"docs": [head("b", 3), head("c", 9)]}),
        (200, {"docs": [full("c", 9, c_doc)]}),
        (200, {"docs": [head("c", 9), {"_id": "b", "found": False}]}),
    )
    backend = OpenSearchBackend(fake_client(node), record_cache_size=10)
    assert backend.fetch(["b", "c", "x"]) == {"b": PRODUCTS[1], "c": PRODUCTS[2]}
    assert node.calls[0].body == {"ids": ["b", "c", "x"]} and node.calls[0].params == {"_source": "false"}
    assert node.calls[1].body == {"ids": ["b", "c"]} and node.calls[1].params == {}
    vecs = backend.vectors(["c", "b"])  # the versions only: both held
    assert list(vecs) == ["c", "b"] and vecs["b"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert len(node.calls) == 3
    assert backend.fetch(["b", "c"]) == {"b": PRODUCTS[1], "c": PRODUCTS[2]}
    assert node.calls[4].body == {"ids": ["c"]}  # c was written since: read again
    assert backend.fetch(["b", "c"]) == {"c": PRODUCTS[2]}  # b deleted since
    assert len(node.calls) == 6


# -- errors and client ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (OSConnectionError("N/A", "Connection refused", OSError("refused")), "is not reachable"),
        (ConnectionTimeout("TIMEOUT", "timed out", TimeoutError()), "timed out"),
    ],
)
def test_connection_errors_become_backend_unavailable(failure: Exception, words: str) -> None:
    node = FakeNode().on("POST", f"/{ALIAS}/_search", failure)
    with pytest.raises(BackendUnavailableError) as info:
        OpenSearchBackend(fake_client(node)).lexical("laptop", 3, Filters())
    message = str(info.value)
    assert NODE in message and words in message and "start one with `scripts/opensearch start`" in message


def test_server_errors_become_backend_unavailable() -> None:
    node = FakeNode().on("GET", f"/{ALIAS}/_count", (503, {"error": {"type": "cluster_block_exception"}}))
    node.on("POST", f"/{ALIAS}/_count", (503, {"error": {"type": "cluster_block_exception"}}))
    with pytest.raises(BackendUnavailableError, match="HTTP 503"):
        OpenSearchBackend(fake_client(node)).count()


def test_make_client_does_not_connect_and_hides_credentials() -> None:
    client = make_client("http://user:secret@127.0.0.1:1", timeout=2.5)
    assert client_url(client) == "http://127.0.0.1:1"
    with pytest.raises(BadInputError):
        make_client("localhost:9200")
    with pytest.raises(BadInputError, match="alias"):
        OpenSearchStore(client, "Bad Alias")


# -- outages: every backend failure is a 503 with a reason, logged once per state change ------------
KNN_NOT_READY = {
    "error": {
        "root_cause": [
            {"type": "parsing_exception", "reason": "[knn] unknown method parameter found [ef_search]"}
        ],
        "type": "parsing_exception",
        "reason": "[knn] unknown method parameter found [ef_search]",
    },
    "status": 400,
}


def test_knn_plugin_not_ready_is_backend_unavailable() -> None:
    """Issue 12.9: a node that is restarting answers before its k-NN plugin is ready, refusing
    ``ef_search`` with a 400; that was a 500, it is a 503 that says to retry."""
    node = FakeNode().on("POST", f"/{ALIAS}/_search", (400, KNN_NOT_READY))
    with pytest.raises(BackendUnavailableError, match="not ready .*retry shortly") as info:
        OpenSearchBackend(fake_client(node)).knn(np.ones(4, dtype=np.float32), 3, Filters())
    assert "unknown method parameter found [ef_search]" in str(info.value)


def test_knn_plugin_not_ready_inside_msearch_is_backend_unavailable() -> None:
    item = {"status": 400, "error": KNN_NOT_READY["error"]}
    hits = {"status": 200, "hits": {"hits": []}}
    node = FakeNode().on("POST", f"/{ALIAS}/_msearch", (200, {"responses": [hits, item]}))
    with pytest.raises(BackendUnavailableError, match="not ready"):
        OpenSearchBackend(fake_client(node)).hybrid("hp", np.ones(4, dtype=np.float32), 2, Filters())


def test_any_other_refusal_is_503_with_the_reason_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A request the node refuses (a version mismatch, a bug) is a 503 naming the node's reason;
    the log gets one ERROR per distinct reason, not one per request."""
    refusal = {
        "error": {"type": "illegal_argument_exception", "reason": "no such field [zzz]"},
        "status": 400,
    }
    node = FakeNode().on("POST", f"/{ALIAS}/_search", (400, refusal))
    backend = OpenSearchBackend(fake_client(node))
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            with pytest.raises(
                BackendUnavailableError, match=r"refused a BM25 search .*no such field \[zzz\]"
            ):
                backend.lexical("laptop", 3, Filters())
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and "no such field [zzz]" in errors[0].getMessage()


def test_odd_msearch_answer_is_backend_unavailable() -> None:
    node = FakeNode().on("POST", f"/{ALIAS}/_msearch", (200, {"responses": []}))
    with pytest.raises(BackendUnavailableError, match="0 responses"):
        OpenSearchBackend(fake_client(node)).hybrid("hp", np.ones(4, dtype=np.float32), 2, Filters())


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_outage_logs_one_line_down_and_one_line_up(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 12.9: 57 s of outage wrote 17,465 traceback lines. N failing requests now log one
    WARNING when the node stops answering and one when it answers again, nothing in between."""
    down = [True]
    refused = OSConnectionError("N/A", "Connection refused", OSError("[Errno 111] Connection refused"))

    def answer(call: Call) -> tuple[int, Any]:
        if down[0]:
            raise refused
        return 200, {"hits": {"hits": [{"_id": "a", "_score": 1.0}]}}

    url = "http://outage-node:9200"
    node = FakeNode().on("POST", f"/{ALIAS}/_search", answer)
    backend = OpenSearchBackend(make_client(url, connection_class=FakeConnection, node=node))
    with caplog.at_level(logging.DEBUG):
        for _ in range(25):
            with pytest.raises(BackendUnavailableError, match="is not reachable"):
                backend.lexical("laptop", 3, Filters())
        assert len(node.calls) == 75  # each request tried three times: max_retries=2
        logged = warnings_of(caplog)
        assert len(logged) == 1, [r.getMessage() for r in logged]
        assert f"OpenSearch at {url} is unavailable" in logged[0].getMessage()
        assert "Connection refused" in logged[0].getMessage() and not logged[0].exc_info
        down[0] = False
        for _ in range(3):
            assert backend.lexical("laptop", 3, Filters()) == [Scored("a", 1.0)]
    logged = warnings_of(caplog)
    assert len(logged) == 2, [r.getMessage() for r in logged]
    assert "answers again" in logged[1].getMessage() and "25 failed requests" in logged[1].getMessage()


def test_a_refused_connection_on_loopback_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """The real connection class: opensearch-py logs every failed attempt as a WARNING with a
    traceback (three per request); shoprank's client keeps those at DEBUG."""
    import socket

    with socket.socket() as s:  # a port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenSearchBackend(make_client(f"http://127.0.0.1:{port}", timeout=2))
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            with pytest.raises(BackendUnavailableError):
                backend.count()
    logged = warnings_of(caplog)
    assert len(logged) == 1 and "is unavailable" in logged[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]


class TwoNodeConnection(FakeConnection):
    """A fake connection whose nodes named in ``DEAD`` refuse every connection."""

    DEAD: set[str] = set()

    def perform_request(self, method, url, params=None, body=None, timeout=None, ignore=(), headers=None):
        if any(name in self.host for name in self.DEAD):
            raise OSConnectionError("N/A", "Connection refused", OSError("refused"))
        return super().perform_request(method, url, params, body, timeout, ignore, headers)


def test_several_urls_fail_over_to_a_live_node(caplog: pytest.LogCaptureFixture) -> None:
    """A cluster's nodes, comma-separated: a dead node is left out, the request retried on a live
    one. The process logs the node's failure once and its return once, however many clients
    (stores, backends) talk to it."""
    hit = (200, {"hits": {"hits": [{"_id": "a", "_score": 2.0}]}})
    node = FakeNode().on("POST", f"/{ALIAS}/_search", hit)
    urls = "http://flaky-node:9201, http://live-node:9202"
    TwoNodeConnection.DEAD = {"flaky-node"}
    clients = [
        make_client(urls, connection_class=TwoNodeConnection, node=node, dead_timeout=0) for _ in range(2)
    ]
    assert client_url(clients[0]) == "http://flaky-node:9201,http://live-node:9202"
    backends = [OpenSearchBackend(c) for c in clients]
    with caplog.at_level(logging.DEBUG):
        for _ in range(4):
            for b in backends:
                assert b.lexical("laptop", 3, Filters()) == [Scored("a", 2.0)]
        logged = warnings_of(caplog)  # no outage: the other node answered every time
        assert [r.getMessage() for r in logged] == [
            "OpenSearch node http://flaky-node:9201 failed; leaving it out for 0 s and using the other nodes"
        ]
        TwoNodeConnection.DEAD = set()
        for _ in range(4):
            for b in backends:
                assert b.lexical("laptop", 3, Filters()) == [Scored("a", 2.0)]
    logged = warnings_of(caplog)
    assert (
        len(logged) == 2 and logged[1].getMessage() == "OpenSearch node http://flaky-node:9201 answers again"
    )
    with pytest.raises(BadInputError, match="comma-separated"):
        make_client("http://a:9200,b:9200")


def test_index_creation_race_between_workers_is_no_error() -> None:
    from indexer.opensearch.events import OpenSearchEventStore

    exists = {"error": {"type": "resource_already_exists_exception", "reason": "index [ubi_events] exists"}}
    node = FakeNode()
    node.on("HEAD", "/ubi_(events|queries)", (404, {}))
    node.on("PUT", "/ubi_events", (400, {**exists, "status": 400}))
    node.on("PUT", "/ubi_queries", (200, {"acknowledged": True}))
    OpenSearchEventStore(fake_client(node)).ensure_indices()  # another worker made ubi_events first
    assert node.requests() == [
        ("HEAD", "/ubi_events"),
        ("PUT", "/ubi_events"),
        ("HEAD", "/ubi_queries"),
        ("PUT", "/ubi_queries"),
    ]
