"""Our Python analysis chain produces exactly the tokens of the OpenSearch index analyzer.

This is what lets the embedded backend's BM25 agree with OpenSearch's. Runs against a real node.
"""

from __future__ import annotations

import uuid

import pytest

from indexer.analysis import ANALYZER_VERSION, Synonyms, analyze, analyze_query
from indexer.manifest import Manifest
from indexer.opensearch.mapping import INDEX_ANALYZER, SEARCH_ANALYZER, index_body
from tests.conftest import opensearch_available, opensearch_url

pytestmark = pytest.mark.integration

EDGE_CASES = [
    "Café Crème De'Longhi's Batteries",
    "Intel® Core™2 Duo E6300 <br />(2M Cache, 1.83 GHz)",
    "Equip Cat.5e SF/UTP Patch Cable, 15m , Red",
    'Epson Matte Paper, 64" x 30,5 m, 189g/m²',
    "HERMA labels Ø 116 mm, Straße, Æble, łódź",
    "ISO_IEC_STD_19798 10dB_ __ C9065V_F",
    'dv7-1211ea 43.2 cm (17") 1,000 e.g. U.S.A. 3.5mm',
    "series glasses shoes toys boxes bus class",
    "ÜBER-fast SSDs & HDDs / 2TB+",
]


@pytest.fixture(scope="module")
def node():
    if not opensearch_available():
        pytest.skip(f"no OpenSearch node at {opensearch_url()}; start one with scripts/opensearch start")
    from indexer.opensearch.client import make_client

    client = make_client(opensearch_url(), timeout=30)
    name = f"shoprank-analysis-{uuid.uuid4().hex[:8]}"
    m = Manifest("opensearch-index", "test", 4, "x", 0, ANALYZER_VERSION)
    client.indices.create(index=name, body=index_body(4, m))
    try:
        yield client, name
    finally:
        client.indices.delete(index=name)


def _os_tokens(client, index, analyzer, text):
    resp = client.indices.analyze(index=index, body={"analyzer": analyzer, "text": text})
    return [t["token"] for t in resp["tokens"]]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_match(node, text):
    client, index = node
    assert analyze(text) == _os_tokens(client, index, INDEX_ANALYZER, text)


def test_catalog_texts_match(node, icecat_dir):
    from indexer.catalog import read_catalog

    client, index = node
    products = read_catalog(icecat_dir / "products_3.json.zip", limit=300).products
    texts = [t for p in products for t in (p.title, p.description, p.name, p.attribute_text()) if t]
    mismatches = [t for t in texts if analyze(t) != _os_tokens(client, index, INDEX_ANALYZER, t)]
    assert len(texts) > 600
    assert mismatches == []


@pytest.mark.parametrize("query", ["laptops", "usb sticks 64gb", "cheap tv", "wifi router", "espresso"])
def test_search_analyzer_expands_the_same_synonyms(node, query):
    client, index = node
    ours = set(analyze_query(query, Synonyms.default()))
    assert ours == set(_os_tokens(client, index, SEARCH_ANALYZER, query))
