"""Issue 12.9: an outage logs one line when the backend goes and one when it is back, never a line
(or a traceback) per request; every request meanwhile gets a 503 that says why."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from indexer.errors import BackendUnavailableError
from indexer.opensearch.client import make_client
from plugin_api.http import app as app_module
from plugin_api.http.app import create_app
from plugin_api.http.services import Services, build_services
from plugin_api.settings import Settings
from ranker.base import Filters
from ranker.retrieval.opensearch import OpenSearchBackend
from tests.conftest import build_fixture_index
from tests.unit.test_opensearch_requests import ALIAS, Call, FakeConnection, FakeNode

REQUESTS = 20


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_fixture_index(tmp_path_factory.mktemp("outage"))


def _settings(root: Any) -> Settings:
    return Settings(data_dir=root / "data", cache_dir=root / "cache", embedder="hashing", device="cpu")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_backend_down_at_start_logs_once_down_and_once_up(
    index_dir: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(app_module, "RETRY_AFTER_S", 0.0)
    down = [True]

    def build(settings: Settings) -> Services:
        if down[0]:
            raise BackendUnavailableError("OpenSearch at http://127.0.0.1:9 is not reachable; start one")
        return build_services(settings)

    with caplog.at_level(logging.INFO), TestClient(create_app(_settings(index_dir), build=build)) as c:
        for _ in range(REQUESTS):
            r = c.get("/v1/search", params={"q": "laptop"})
            assert r.status_code == 503 and "not reachable" in r.json()["error"]
        down[0] = False
        assert c.get("/v1/search", params={"q": "laptop"}).status_code == 200
        assert c.get("/v1/search", params={"q": "laptop"}).status_code == 200
    logged = _warnings(caplog)
    assert len(logged) == 2, logged
    assert logged[0].startswith("service not ready") and "not reachable" in logged[0]
    assert logged[1].startswith("service ready after") and f"{REQUESTS} requests answered 503" in logged[1]


def test_opensearch_outage_under_a_running_service_logs_once_down_and_once_up(
    index_dir: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Searches go through a real OpenSearch client (fake transport) that loses its node."""
    down = [False]

    def answer(call: Call) -> tuple[int, Any]:
        if down[0]:
            raise OSConnectionError("N/A", "Connection refused", OSError("[Errno 111] Connection refused"))
        return 200, {"hits": {"hits": []}}

    node = FakeNode().on("POST", f"/{ALIAS}/_search", answer)
    url = "http://outage-app-node:9200"
    remote = OpenSearchBackend(make_client(url, connection_class=FakeConnection, node=node))

    def build(settings: Settings) -> Services:
        services = build_services(settings)
        local = services.search

        def search(*args: Any, **kwargs: Any) -> Any:
            remote.lexical("laptop", 3, Filters())  # raises while the node is gone
            return local(*args, **kwargs)

        services.search = search  # type: ignore[method-assign]
        return services

    with caplog.at_level(logging.INFO), TestClient(create_app(_settings(index_dir), build=build)) as c:
        assert c.get("/v1/search", params={"q": "laptop"}).status_code == 200
        down[0] = True
        for _ in range(REQUESTS):
            r = c.get("/v1/search", params={"q": "laptop"})
            assert r.status_code == 503 and f"OpenSearch at {url} is not reachable" in r.json()["error"]
        down[0] = False
        assert c.get("/v1/search", params={"q": "laptop"}).status_code == 200
    logged = _warnings(caplog)
    assert len(logged) == 2, logged
    assert f"OpenSearch at {url} is unavailable" in logged[0] and "Connection refused" in logged[0]
    assert "answers again" in logged[1] and f"{REQUESTS} failed requests" in logged[1]
    assert not [r for r in caplog.records if r.exc_info]
    assert len(node.calls) == 1 + 3 * REQUESTS + 1  # three tries per request (max_retries=2)


def test_query_records_that_cannot_be_stored_log_once_and_searches_still_answer(
    index_dir: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A ubi_queries store that fails (shards still recovering after a restart) used to log a
    traceback per search."""
    broken = [True]

    def build(settings: Settings) -> Services:
        services = build_services(settings)
        add = services.events.add

        def flaky(events: Any, queries: Any = ()) -> Any:
            if broken[0] and queries:
                raise BackendUnavailableError("OpenSearch refused a query record: shards unavailable")
            return add(events, queries)

        services.events.add = flaky  # type: ignore[method-assign]
        return services

    with caplog.at_level(logging.INFO), TestClient(create_app(_settings(index_dir), build=build)) as c:
        for _ in range(REQUESTS):
            assert c.get("/v1/search", params={"q": "laptop"}).status_code == 200
        broken[0] = False
        assert c.get("/v1/search", params={"q": "laptop"}).status_code == 200
    logged = _warnings(caplog)
    assert len(logged) == 2, logged
    assert "not being stored" in logged[0] and "shards unavailable" in logged[0]
    assert "stored again" in logged[1] and f"{REQUESTS} searches" in logged[1]
    assert not [r for r in caplog.records if r.exc_info]
