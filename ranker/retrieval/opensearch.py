"""The OpenSearch search backend: BM25 ``multi_match``, lucene HNSW k-NN, hybrid in one ``_msearch``.

User text only ever goes in as the ``query`` value of a ``multi_match`` (no query-string syntax),
filters run inside the engine (``bool.filter``; inside the ``knn`` clause for efficient filtering),
and k-NN scores are converted back to cosine similarity like the embedded backend returns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from indexer.analysis import analyze, raw_tokens
from indexer.errors import BackendUnavailableError, BadInputError
from indexer.manifest import Manifest
from indexer.opensearch.client import client_url, os_errors, raise_response_error
from indexer.opensearch.mapping import BRAND_FILTER_FIELD, INDEX_ANALYZER, SEARCH_ANALYZER
from indexer.opensearch.store import read_manifest
from indexer.product import Product
from indexer.schema import (
    DEFAULT_FIELD_BOOSTS,
    DEFAULT_SYNONYM_WEIGHT,
    NAMING_FIELDS,
    SEARCH_FIELDS,
    STRICT_FIELDS,
    TEXT_FIELDS,
    VECTOR_FIELD,
    product_from_document,
)
from ranker.base import Filters, Scored
from ranker.retrieval.records import Record, RecordCache, version_of

log = logging.getLogger(__name__)


DEFAULT_EF_SEARCH = 256


def knn_score_to_cosine(score: float) -> float:
    """Lucene's cosine score is ``(1 + cos) / 2``; return ``cos``."""
    return 2.0 * float(score) - 1.0


def filter_clauses(filters: Filters) -> list[dict[str, Any]]:
    """The ``bool.filter`` clauses equivalent to :meth:`Filters.accepts`."""
    clauses: list[dict[str, Any]] = []
    if filters.brands:
        values = sorted({b.lower() for b in filters.brands})
        clauses.append({"terms": {BRAND_FILTER_FIELD: values}})
    if filters.price_min is not None or filters.price_max is not None:
        rng: dict[str, float] = {}
        if filters.price_min is not None:
            rng["gte"] = float(filters.price_min)
        if filters.price_max is not None:
            rng["lte"] = float(filters.price_max)
        clauses.append({"range": {"price": rng}})
    if filters.in_stock is not None:
        # a product with unknown stock passes, as in Filters.accepts
        clauses.append(
            {
                "bool": {
                    "should": [
                        {"term": {"in_stock": filters.in_stock}},
                        {"bool": {"must_not": [{"exists": {"field": "in_stock"}}]}},
                    ],
                    "minimum_should_match": 1,
                }
            }
        )
    return clauses


class OpenSearchBackend:
    """:class:`~ranker.base.SearchBackend` over the alias an :class:`OpenSearchStore` maintains."""

    name = "opensearch"

    def __init__(
        self,
        client: Any,
        alias: str = "shoprank-products",
        field_boosts: Mapping[str, float] = DEFAULT_FIELD_BOOSTS,
        synonym_weight: float = DEFAULT_SYNONYM_WEIGHT,
        ef_search: int = DEFAULT_EF_SEARCH,
        record_cache_size: int = 0,
    ):
        if ef_search < 1:
            raise BadInputError("ef_search must be >= 1")
        self.ef_search = int(ef_search)
        if synonym_weight < 0:
            raise BadInputError("synonym_weight must be >= 0")
        self.synonym_weight = float(synonym_weight)
        unknown = sorted(set(field_boosts) - set(SEARCH_FIELDS))
        if unknown:
            raise BadInputError(f"unknown text field(s) {unknown}; choose from {', '.join(SEARCH_FIELDS)}")
        self.fields = [f"{f}^{float(b):g}" for f, b in field_boosts.items() if b > 0]
        if not self.fields:
            raise BadInputError("every field boost is 0; give at least one text field a positive boost")
        self.client = client
        self.alias = alias
        self.url = client_url(client)
        # candidates' records and vectors by document version (0: every fetch reads the sources)
        self.records = RecordCache(record_cache_size) if record_cache_size > 0 else None

    # -- request bodies -----------------------------------------------------------------------
    def multi_match(
        self, query: str, analyzer: str = INDEX_ANALYZER, boost: float | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "query": query,
            "type": "most_fields",
            "fields": list(self.fields),
            "operator": "or",
            "analyzer": analyzer,
        }
        if boost is not None:
            body["boost"] = boost
        return {"multi_match": body}

    def lexical_clauses(self, query: str, expansions: Sequence[tuple[str, float]] = ()) -> dict[str, Any]:
        """The query as typed, plus ``synonym_weight`` × the synonym-expanded query, plus each
        expansion term at its weight (same sum as embedded)."""
        extra = [
            self.multi_match(term, boost=float(weight))
            for term, weight in expansions
            if weight > 0 and analyze(term)
        ]
        if self.synonym_weight == 0 and not extra:
            return {"must": [self.multi_match(query)]}
        should = [self.multi_match(query)]
        if self.synonym_weight > 0:
            should.append(self.multi_match(query, SEARCH_ANALYZER, self.synonym_weight))
        return {"should": should + extra, "minimum_should_match": 1}

    def lexical_body(
        self, query: str, n: int, filters: Filters, expansions: Sequence[tuple[str, float]] = ()
    ) -> dict[str, Any]:
        boolean: dict[str, Any] = self.lexical_clauses(query, expansions)
        clauses = filter_clauses(filters)
        if clauses:
            boolean["filter"] = clauses
        return {"size": n, "_source": False, "track_total_hits": False, "query": {"bool": boolean}}

    @staticmethod
    def strict_lexical_body(query: str, n: int, filters: Filters) -> dict[str, Any] | None:
        """Every analyzed query term must match one of :data:`STRICT_FIELDS`; each term scores its
        best field (``dis_max``, tie-breaker 0), as :class:`~ranker.retrieval.bm25.BestFieldBM25`. The
        terms go through the index analyzer (no synonyms). None when the query has no terms."""
        terms = list(dict.fromkeys(analyze(query)))
        if not terms:
            return None
        must = [
            {
                "dis_max": {
                    "queries": [
                        {"match": {f: {"query": t, "operator": "and", "analyzer": INDEX_ANALYZER}}}
                        for f in STRICT_FIELDS
                    ]
                }
            }
            for t in terms
        ]
        boolean: dict[str, Any] = {"must": must}
        clauses = filter_clauses(filters)
        if clauses:
            boolean["filter"] = clauses
        return {"size": n, "_source": False, "track_total_hits": False, "query": {"bool": boolean}}

    def knn_body(self, vector: np.ndarray, n: int, filters: Filters) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "vector": [float(x) for x in np.asarray(vector, dtype=np.float32).ravel()],
            "k": n,
            # HNSW beam width: at ef = k the lucene graph found 96% of the exact top 100 on the
            # Chorus catalog, at 300 it found 99% (bench/README.md); never below k.
            "method_parameters": {"ef_search": max(self.ef_search, n)},
        }
        clauses = filter_clauses(filters)
        if clauses:
            spec["filter"] = {"bool": {"filter": clauses}}
        return {
            "size": n,
            "_source": False,
            "track_total_hits": False,
            "query": {"knn": {VECTOR_FIELD: spec}},
        }

    # -- SearchBackend ------------------------------------------------------------------------
    def _search(self, body: dict[str, Any], action: str) -> dict[str, Any]:
        with os_errors(self.url, action):
            return self.client.search(index=self.alias, body=body)

    @staticmethod
    def _hits(resp: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(((resp.get("hits") or {}).get("hits")) or [])

    def _lexical_hits(self, resp: Mapping[str, Any]) -> list[Scored]:
        return [Scored(str(h["_id"]), float(h["_score"])) for h in self._hits(resp)]

    def _knn_hits(self, resp: Mapping[str, Any]) -> list[Scored]:
        return [Scored(str(h["_id"]), knn_score_to_cosine(h["_score"])) for h in self._hits(resp)]

    @staticmethod
    def _check_n(n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise BadInputError(f"n must be a positive integer, got {n!r}")

    def lexical(
        self, query: str, n: int, filters: Filters, expansions: Sequence[tuple[str, float]] = ()
    ) -> list[Scored]:
        self._check_n(n)
        body = self.lexical_body(query, n, filters, expansions)
        return self._lexical_hits(self._search(body, "a BM25 search"))

    def strict_lexical(self, query: str, n: int, filters: Filters) -> list[Scored]:
        self._check_n(n)
        body = self.strict_lexical_body(query, n, filters)
        if body is None:
            return []
        return self._lexical_hits(self._search(body, "a strict keyword search"))

    def knn(self, vector: np.ndarray, n: int, filters: Filters) -> list[Scored]:
        self._check_n(n)
        if not np.any(vector):
            return []  # no direction, no cosine (lucene refuses zero vectors)
        return self._knn_hits(self._search(self.knn_body(vector, n, filters), "a vector search"))

    def hybrid(
        self,
        query: str,
        vector: np.ndarray,
        n: int,
        filters: Filters,
        expansions: Sequence[tuple[str, float]] = (),
    ) -> tuple[list[Scored], list[Scored]]:
        self._check_n(n)
        if not np.any(vector):
            return self.lexical(query, n, filters, expansions), []
        body = [
            {},
            self.lexical_body(query, n, filters, expansions),
            {},
            self.knn_body(vector, n, filters),
        ]
        with os_errors(self.url, "a hybrid search"):
            resp = self.client.msearch(index=self.alias, body=body)
        responses = resp.get("responses") or []
        if len(responses) != 2:
            raise BackendUnavailableError(
                f"OpenSearch at {self.url} answered {len(responses)} responses to a 2-search _msearch; "
                "check the node (`scripts/opensearch status`)"
            )
        for item in responses:
            if "error" in item:
                raise_response_error(item, self.url, "a hybrid search")
        return self._lexical_hits(responses[0]), self._knn_hits(responses[1])

    def lexical_scores(
        self, query: str, ids: Sequence[str], expansions: Sequence[tuple[str, float]] = ()
    ) -> dict[str, float]:
        ids = list(dict.fromkeys(str(i) for i in ids))
        if not ids:
            return {}
        body = {
            "size": len(ids),
            "_source": False,
            "track_total_hits": False,
            "query": {
                "bool": {**self.lexical_clauses(query, expansions), "filter": [{"ids": {"values": ids}}]}
            },
        }
        resp = self._search(body, "scoring products")
        return {s.id: s.score for s in self._lexical_hits(resp)}

    def _mget(self, ids: Sequence[str], action: str, **params: Any) -> list[dict[str, Any]]:
        ids = list(dict.fromkeys(str(i) for i in ids))
        if not ids:
            return []
        with os_errors(self.url, action):
            resp = self.client.mget(index=self.alias, body={"ids": ids}, **params)
        return [d for d in resp.get("docs") or [] if d.get("found")]

    def ids_for_eans(self, eans: Sequence[str]) -> dict[str, str]:
        """EAN → product id for the EANs some product carries."""
        eans = list(dict.fromkeys(str(e) for e in eans))
        out: dict[str, str] = {}
        for start in range(0, len(eans), 1000):
            chunk = eans[start : start + 1000]
            body = {
                "size": len(chunk) * 2,
                "_source": ["ean"],
                "track_total_hits": False,
                "query": {"bool": {"filter": [{"terms": {"ean": chunk}}]}},
            }
            resp = self._search(body, "resolving EANs")
            wanted = set(chunk)
            for d in self._hits(resp):
                for e in (d.get("_source") or {}).get("ean") or []:
                    if e in wanted:
                        out.setdefault(str(e), str(d["_id"]))
        return out

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if self.records is not None:
            return {
                i: r.vector for i, r in self._records(ids, "reading vectors").items() if r.vector is not None
            }
        out: dict[str, np.ndarray] = {}
        for d in self._mget(ids, "reading vectors", _source_includes=VECTOR_FIELD):
            vec = (d.get("_source") or {}).get(VECTOR_FIELD)
            if vec is not None:
                out[str(d["_id"])] = np.asarray(vec, dtype=np.float32)
        return out

    def fetch(self, ids: Sequence[str]) -> dict[str, Product]:
        if self.records is not None:
            return {i: r.product for i, r in self._records(ids, "fetching products").items()}
        return {
            str(d["_id"]): product_from_document(d["_source"])
            for d in self._mget(ids, "fetching products", _source_excludes=VECTOR_FIELD)
        }

    def _records(self, ids: Sequence[str], action: str) -> dict[str, Record]:
        """The found products' records and vectors: each document's version read without its
        source, the source read only for the ones the cache does not hold at that version."""
        assert self.records is not None
        out: dict[str, Record] = {}
        stale: list[str] = []
        for d in self._mget(ids, action, _source="false"):
            pid, version = str(d["_id"]), version_of(d)
            got = self.records.get(pid, version) if version is not None else None
            if got is None:
                stale.append(pid)
            else:
                out[pid] = got
        for d in self._mget(stale, action):
            src = d.get("_source") or {}
            pid, version = str(d["_id"]), version_of(d)
            vec = src.get(VECTOR_FIELD)
            record = Record(
                version or (-1, -1),
                product_from_document(src),
                None if vec is None else np.asarray(vec, dtype=np.float32),
            )
            if version is not None:
                self.records.put(pid, record)
            out[pid] = record
        return {i: out[i] for i in dict.fromkeys(str(i) for i in ids) if i in out}

    def naming_documents(self) -> Iterator[tuple[list[list[str]], list[str], tuple[str, str]]]:
        """Every product's words, (naming fields' words before stemming, the other text fields'
        analyzed terms, (title, category) as written), read with a scroll over the text fields' source (the index's analysis)."""
        from opensearchpy.helpers import scan

        with os_errors(self.url, "reading the vocabulary"):
            for hit in scan(
                self.client,
                index=self.alias,
                query={"_source": list(TEXT_FIELDS), "query": {"match_all": {}}},
                size=1000,
                preserve_order=False,
            ):
                src = hit.get("_source") or {}
                naming = [raw_tokens(str(src.get(f) or "")) for f in NAMING_FIELDS]
                other = [
                    t for f in TEXT_FIELDS if f not in NAMING_FIELDS for t in analyze(str(src.get(f) or ""))
                ]
                yield naming, other, (str(src.get("title") or ""), str(src.get("category") or ""))

    def count(self) -> int:
        with os_errors(self.url, "counting documents"):
            return int(self.client.count(index=self.alias)["count"])

    def manifest(self) -> Manifest | None:
        return read_manifest(self.client, self.alias, self.url)
