"""``shoprank serve`` as a real process on 127.0.0.1 against the real OpenSearch node.

The service reaches OpenSearch through a TCP proxy this test controls, so "OpenSearch goes away"
is a real outage at the network level (connections refused, open ones cut) without stopping the
shared node: the service must answer 503 and recover by itself when the node is reachable again.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from plugin_api.cli.main import main
from tests.conftest import FIXTURES

pytestmark = pytest.mark.integration

URL = os.environ.get("SHOPRANK_OPENSEARCH_URL", "http://127.0.0.1:9200")
RUN = uuid.uuid4().hex[:8]
ALIAS = f"shoprank-serve-{RUN}"
UBI = f"shoprank-serve-{RUN}-ubi"
KEY = "integration-key"
# The service's answers are what these tests check, not its speed (bench/ measures that): a
# generous client timeout keeps a loaded 2-core CI machine from failing them.
http = SimpleNamespace(
    **{m: functools.partial(getattr(httpx, m), timeout=60.0) for m in ("get", "post", "delete")}
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """Forwards 127.0.0.1:port to the node; ``down()`` refuses and cuts connections, ``up()`` heals."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = _free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            if self._server is not None:
                # shutdown() wakes the thread blocked in accept(); close() alone would not (Linux)
                with contextlib.suppress(OSError):
                    self._server.shutdown(socket.SHUT_RDWR)
                self._server.close()
                self._server = None
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._conns.clear()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def node(opensearch_client):
    client = opensearch_client
    yield client
    for pattern in (f"{ALIAS}*", f"{UBI}*"):
        client.indices.delete(index=pattern, ignore=[404])


@pytest.fixture(scope="module")
def sentiment_model(tmp_path_factory, minilm) -> Path:
    """A tiny real sentiment model (a few dozen CPU steps) so the service can score reviews."""
    from training.finetune import TrainConfig
    from training.reviews_data import Review
    from training.sentiment import train_sentiment

    good = ["great product, love it", "excellent quality", "works perfectly, very happy", "amazing value"]
    bad = ["terrible, broke after a day", "awful quality", "stopped working, disappointed", "do not buy"]
    rows = [Review(t, 1, f"g{i}", "d") for i, t in enumerate(good * 3)]
    rows += [Review(t, 0, f"b{i}", "d") for i, t in enumerate(bad * 3)]
    out = tmp_path_factory.mktemp("sentiment")
    cfg = TrainConfig(
        epochs=20, batch_size=8, lr=1e-4, max_length=32, device="cpu", max_steps=40, checkpoint_every=0
    )
    train_sentiment(rows, rows[:2] + rows[-2:], out, cfg, lang="en")
    return out


@pytest.fixture(scope="module")
def service(node, sentiment_model, tmp_path_factory):
    home = tmp_path_factory.mktemp("serve")
    env = {
        **os.environ,
        "SHOPRANK_CACHE_DIR": str(home / "cache"),
        "SHOPRANK_EMBEDDER": "hashing",
        "SHOPRANK_API_KEYS": json.dumps([KEY]),
        "SHOPRANK_UBI_PREFIX": UBI,
        "SHOPRANK_EVENT_SYNC_S": "0",
    }
    old = {k: os.environ.get(k) for k in ("SHOPRANK_CACHE_DIR", "SHOPRANK_EMBEDDER")}
    os.environ.update({k: env[k] for k in old})
    try:
        argv = ["index", "--backend", "opensearch", "--opensearch-url", URL, "--index-alias", ALIAS]
        assert main([*argv, "--catalog", str(FIXTURES / "catalog.jsonl"), "--quiet"]) == 0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    target = httpx.URL(URL)
    proxy = Proxy((target.host, target.port or 9200))
    proxy.up()
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "plugin_api.cli",
        "serve",
        "--port",
        str(port),
        "--backend",
        "opensearch",
        "--opensearch-url",
        f"http://127.0.0.1:{proxy.port}",
        "--index-alias",
        ALIAS,
        "--sentiment-model",
        str(sentiment_model),
    ]
    log = open(home / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (home / "serve.log").read_text()
            try:
                if http.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("shoprank serve did not become ready:\n" + (home / "serve.log").read_text())
        yield base, proxy
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        proxy.down()


def test_search_similar_and_bad_input(service):
    base, _ = service
    r = http.get(f"{base}/v1/search", params={"q": "ThinkPad notebook", "k": 3, "explain": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"][0]["id"] == "p01" and body["query_id"]
    assert body["facets"]["brand"]
    sim = http.get(f"{base}/v1/recommend/similar/p01", params={"k": 4}).json()
    assert len(sim["results"]) == 4 and "p01" not in {x["id"] for x in sim["results"]}
    assert http.get(f"{base}/v1/recommend/similar/nope").status_code == 404
    for params in ({"q": ""}, {"q": "x" * 10_000}, {"q": "laptop", "k": -3}):
        assert http.get(f"{base}/v1/search", params=params).status_code == 422
    for q in ("*:*", '{"query": {"match_all": {}}}', "Ünïcödé ノート"):
        assert http.get(f"{base}/v1/search", params={"q": q}).status_code == 200


def test_typos_prefixes_and_suggestions_on_the_opensearch_service(service):
    base, _ = service
    body = http.get(f"{base}/v1/search", params={"q": "thinkpda notebook", "k": 3}).json()
    assert body["corrected_query"] == "thinkpad notebook" and body["results"][0]["id"] == "p01"
    typing = http.get(f"{base}/v1/search", params={"q": "espresso mach", "k": 1}).json()
    assert typing["interpretation"]["completion"]["completed"] == "machine"
    assert typing["results"][0]["id"] == "p27"
    sugg = http.get(f"{base}/v1/suggest", params={"q": "espresso mac"}).json()["suggestions"]
    assert sugg[0]["text"] == "espresso machine" and sugg[0]["products"] == 1


def test_events_user_recommendations_and_erasure(service):
    base, _ = service
    now = int(time.time() * 1000)

    def ev(action: str, client: str, pid: str, dt: int) -> dict:
        obj = {"object_id": pid, "object_id_field": "id"}
        return {
            "action_name": action,
            "client_id": client,
            "timestamp": now + dt,
            "event_attributes": {"object": obj},
        }

    events = [ev("click", "s1", "p01", 0), ev("purchase", "s1", "p02", 1), ev("purchase", "s2", "p01", 2)]
    # sent by the shop's backend (admin key): trusted, so they shape trending too
    r = http.post(f"{base}/v1/events", json={"events": events}, headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["accepted"] == 3 and r.json()["resolved"] == 3
    again = http.post(f"{base}/v1/events", json={"events": events}, headers={"X-API-Key": KEY})
    assert again.json()["duplicates"] == 3
    recs = http.get(f"{base}/v1/recommend/user/s1").json()
    assert recs["strategy"] == "profile" and "p02" not in {x["id"] for x in recs["results"]}
    assert http.get(f"{base}/v1/recommend/user/newcomer").json()["strategy"] == "trending"
    assert http.delete(f"{base}/v1/users/s1").status_code == 401
    r = http.delete(f"{base}/v1/users/s1", headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["erased_records"] >= 2
    assert http.get(f"{base}/v1/recommend/user/s1").json()["strategy"] == "trending"


def test_browser_events_are_verified_against_the_search_that_showed_them(service, node):
    """An untrusted click counts only when its query_id's search (read back from the node by id,
    right after the search: no refresh) showed that shopper the product."""
    from indexer.opensearch.events import OpenSearchEventStore

    base, _ = service
    r = http.get(f"{base}/v1/search", params={"q": "notebook", "k": 3, "user_id": "browser-1"}).json()
    qid, page = r["query_id"], [x["id"] for x in r["results"]]
    other = next(p for p in ("p20", "p19", "p18", "p17") if p not in page)
    now = int(time.time() * 1000)

    def click(pid: str, client: str) -> dict:
        obj = {"object_id": pid, "object_id_field": "id"}
        return {
            "action_name": "click",
            "client_id": client,
            "query_id": qid,
            "timestamp": now,
            "event_attributes": {"object": obj},
        }

    body = {
        "events": [click(page[0], "browser-1"), click(other, "browser-1"), click(page[1], "someone-else")]
    }
    assert http.post(f"{base}/v1/events", json=body).json()["accepted"] == 3
    stored = {
        (e.product_id, e.client_id): (e.trusted, e.verified)
        for e in OpenSearchEventStore(node, prefix=UBI).events()
        if e.query_id == qid
    }
    assert stored == {
        (page[0], "browser-1"): (False, True),
        (other, "browser-1"): (False, False),
        (page[1], "someone-else"): (False, False),
    }


def test_reviews_change_sentiment_and_writes_need_the_key(service):
    base, _ = service
    reviews = [
        {"product_id": "p02", "text": f"terrible, broke after a day ({i})", "rating": 1} for i in range(25)
    ]
    assert http.post(f"{base}/v1/reviews", json={"reviews": reviews}).status_code == 401
    r = http.post(f"{base}/v1/reviews", json={"reviews": reviews}, headers={"X-API-Key": "nope"})
    assert r.status_code == 401
    r = http.post(f"{base}/v1/reviews", json={"reviews": reviews}, headers={"X-API-Key": KEY}, timeout=60)
    assert r.status_code == 200 and r.json()["added"] == 25, r.text
    hits = http.get(f"{base}/v1/search", params={"q": "HP Pavilion notebook", "k": 5}).json()["results"]
    p02 = next(x for x in hits if x["id"] == "p02")
    assert p02["product"]["review_count"] == 25 and p02["product"]["sentiment"] < 0


def test_events_stored_by_another_worker_reach_this_one(service, node):
    """Several workers share the OpenSearch event indices; each folds in the others' events."""
    from indexer.events import Event
    from indexer.opensearch.events import OpenSearchEventStore

    base, _ = service
    assert http.get(f"{base}/v1/recommend/user/elsewhere").json()["strategy"] == "trending"
    other = OpenSearchEventStore(node, prefix=UBI)
    assert (
        other.add([Event("purchase", "elsewhere", time.time(), object_id="p03", product_id="p03")]).accepted
        == 1
    )
    recs = http.get(f"{base}/v1/recommend/user/elsewhere").json()
    assert recs["strategy"] == "profile" and "p03" not in {x["id"] for x in recs["results"]}


def test_opensearch_outage_is_503_then_recovers(service):
    base, proxy = service
    assert http.get(f"{base}/v1/search", params={"q": "printer"}).status_code == 200
    proxy.down()
    try:
        r = http.get(f"{base}/v1/search", params={"q": "printer"}, timeout=60)
        assert r.status_code == 503 and "OpenSearch" in r.json()["error"]
        assert http.get(f"{base}/healthz").status_code == 200  # the process stays up
        assert http.get(f"{base}/readyz", timeout=60).status_code == 503
    finally:
        proxy.up()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if http.get(f"{base}/v1/search", params={"q": "printer"}, timeout=30).status_code == 200:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the service did not recover after OpenSearch came back")
    assert http.get(f"{base}/readyz").status_code == 200
