"""OpenSearch request bodies are built fresh: no dict is shared between two bodies or within one,
so a caller that adjusts a body (replicas, a test, a migration) cannot change the next one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from indexer.manifest import Manifest
from indexer.opensearch.events import events_body, queries_body
from indexer.opensearch.mapping import index_body
from indexer.opensearch.reviews import review_aggs, review_index_body


def _product_body() -> dict[str, Any]:
    manifest = Manifest(
        kind="opensearch",
        model_id="hashing-8",
        dimension=8,
        catalog_hash="abc",
        documents=1,
        analyzer_version=1,
        created_at="2024-01-02T03:04:05+00:00",
    )
    return index_body(8, manifest)


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "products": _product_body,
    "events": events_body,
    "queries": queries_body,
    "reviews": review_index_body,
    "review aggs": review_aggs,
}


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _dicts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _dicts(v)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_body_shares_no_dict_with_itself_or_the_next_one(name):
    first, second = BUILDERS[name](), BUILDERS[name]()
    assert first == second
    ids = [id(d) for d in _dicts(first)]
    assert len(ids) == len(set(ids)), "one dict appears twice inside the body"
    assert not set(ids) & {id(d) for d in _dicts(second)}, "two calls return the same dict"


def test_changing_a_body_leaves_the_next_one_alone():
    body = _product_body()
    body["mappings"]["properties"]["reviews"]["properties"]["count"]["type"] = "long"
    assert _product_body()["mappings"]["properties"]["reviews"]["properties"]["count"]["type"] == "integer"
