"""The real OpenSearch node the integration tests share (skipped when none answers)."""

from __future__ import annotations

import pytest

from indexer.opensearch_client import make_client
from tests.conftest import opensearch_url


@pytest.fixture(scope="session")
def opensearch_client():
    client = make_client(opensearch_url(), timeout=30.0)
    try:
        if not client.ping():
            raise ConnectionError("ping failed")
    except Exception as exc:
        pytest.skip(
            f"no OpenSearch node answers at {opensearch_url()} ({exc}); start one with `scripts/opensearch start`"
        )
    return client
