"""The OpenSearch index body: analysis chain, strict mapping, k-NN vector field and manifest.

The analyzers mirror :mod:`indexer.analysis` (standard tokenizer → lowercase → asciifolding →
possessive_english → minimal_english → [search side: synonym_graph]), so BM25 behaves the same on
both backends. The synonym rules are parsed through the chain before them, so they are stemmed too
("laptops" matches the rule "laptop, notebook").
"""

from __future__ import annotations

from typing import Any

from indexer.analysis import Synonyms
from indexer.errors import BadInputError
from indexer.manifest import Manifest
from indexer.schema import COMBINED_FIELD, COMBINED_SOURCES, TEXT_FIELDS, VECTOR_FIELD

INDEX_ANALYZER = "shoprank_text"
SEARCH_ANALYZER = "shoprank_search"
LOWERCASE_NORMALIZER = "shoprank_lowercase"
# Brand filtering is case-insensitive (Filters.accepts compares ``.lower()``): a lowercase-only
# keyword subfield, no ASCII folding, so "Citroën" and "Citroen" stay different as in the reference.
BRAND_FILTER_FIELD = "brand.filter"
KEYWORD_SUBFIELDS = ("title", "brand", "name", "category")
META_KEY = "shoprank"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128
MAX_DIMENSION = 16000  # the k-NN plugin's limit for the lucene engine


def analysis_settings(synonym_rules: list[str]) -> dict[str, Any]:
    base = ["lowercase", "asciifolding", "shoprank_possessive"]
    stemmed = [*base, "shoprank_minimal_english"]
    search = [*stemmed, "shoprank_synonyms"] if synonym_rules else stemmed
    filters: dict[str, Any] = {
        "shoprank_possessive": {"type": "stemmer", "language": "possessive_english"},
        "shoprank_minimal_english": {"type": "stemmer", "language": "minimal_english"},
    }
    if synonym_rules:
        filters["shoprank_synonyms"] = {"type": "synonym_graph", "synonyms": list(synonym_rules)}
    return {
        "filter": filters,
        "analyzer": {
            INDEX_ANALYZER: {
                "type": "custom",
                "tokenizer": "standard",
                "filter": stemmed,
            },
            SEARCH_ANALYZER: {
                "type": "custom",
                "tokenizer": "standard",
                "filter": search,
            },
        },
        "normalizer": {
            LOWERCASE_NORMALIZER: {"type": "custom", "char_filter": [], "filter": ["lowercase"]},
        },
    }


def _text_field(name: str) -> dict[str, Any]:
    field: dict[str, Any] = {"type": "text", "analyzer": INDEX_ANALYZER, "search_analyzer": SEARCH_ANALYZER}
    if name in KEYWORD_SUBFIELDS:
        field["fields"] = {"keyword": {"type": "keyword", "ignore_above": 256}}
        if name == "brand":
            field["fields"]["filter"] = {"type": "keyword", "normalizer": LOWERCASE_NORMALIZER}
    if name in COMBINED_SOURCES:
        field["copy_to"] = COMBINED_FIELD
    return field


def vector_field(dimension: int) -> dict[str, Any]:
    return {
        "type": "knn_vector",
        "dimension": dimension,
        "method": {
            "name": "hnsw",
            "engine": "lucene",
            "space_type": "cosinesimil",
            "parameters": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
        },
    }


# The review aggregate kept with each product (``shoprank reviews ingest``): exact sums and counts,
# plus the shrunk sentiment and rating, so queries can filter or boost on them.
REVIEWS_FIELD = "reviews"


def reviews_mapping() -> dict[str, Any]:
    """The ``reviews`` object field (a fresh dict each call: request bodies share no dict)."""
    return {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "sentiment_sum": {"type": "double"},
            "rating_count": {"type": "integer"},
            "rating_sum": {"type": "double"},
            "sentiment": {"type": "float"},
            "rating": {"type": "float"},
        },
    }


def mappings(dimension: int, manifest: Manifest) -> dict[str, Any]:
    props: dict[str, Any] = {"id": {"type": "keyword"}}
    props.update({name: _text_field(name) for name in TEXT_FIELDS})
    props[COMBINED_FIELD] = _text_field(COMBINED_FIELD)
    props.update(
        {
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
            REVIEWS_FIELD: reviews_mapping(),
            VECTOR_FIELD: vector_field(dimension),
        }
    )
    return {"dynamic": "strict", "_meta": {META_KEY: manifest.to_dict()}, "properties": props}


# Replicas when none are asked for: one copy more on a cluster, none on a single node (which a
# replica would leave yellow forever), adjusted by OpenSearch itself as nodes come and go.
AUTO_REPLICAS = "0-1"


def replica_settings(replicas: int | None) -> dict[str, Any]:
    """``number_of_replicas`` when given, else ``auto_expand_replicas`` (:data:`AUTO_REPLICAS`)."""
    if replicas is None:
        return {"auto_expand_replicas": AUTO_REPLICAS}
    if replicas < 0:
        raise BadInputError(f"need replicas >= 0, got {replicas}")
    return {"number_of_replicas": replicas}


def index_body(
    dimension: int,
    manifest: Manifest,
    shards: int = 1,
    replicas: int | None = None,
    synonym_rules: list[str] | None = None,
) -> dict[str, Any]:
    """Settings and mappings for one versioned product index (``PUT /<index>`` body).
    ``replicas`` None: one replica on a cluster, none on a single node (:data:`AUTO_REPLICAS`)."""
    if not 1 <= dimension <= MAX_DIMENSION:
        raise BadInputError(f"vector dimension must be between 1 and {MAX_DIMENSION}, got {dimension}")
    if dimension != manifest.dimension:
        raise BadInputError(f"vector dimension {dimension} differs from the manifest's {manifest.dimension}")
    if shards < 1 or (replicas is not None and replicas < 0):
        raise BadInputError(f"need shards >= 1 and replicas >= 0, got {shards} and {replicas}")
    rules = Synonyms.default().rules() if synonym_rules is None else list(synonym_rules)
    return {
        "settings": {
            "index": {"number_of_shards": shards, **replica_settings(replicas), "knn": True},
            "analysis": analysis_settings(rules),
        },
        "mappings": mappings(dimension, manifest),
    }
