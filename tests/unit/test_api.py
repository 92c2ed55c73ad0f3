"""The HTTP service on the embedded backend (hashing embedder: no model needed), via TestClient."""

import inspect
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from indexer.errors import BackendUnavailableError
from plugin_api.http import app as app_module
from plugin_api.http.app import create_app
from plugin_api.http.services import Services, build_services
from plugin_api.settings import Settings
from ranker.lazy import Once
from ranker.ranking.features import FEATURES
from tests.conftest import build_fixture_index

KEY = "test-key-123"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    return build_fixture_index(tmp_path_factory.mktemp("api"))


def _settings(root, tmp_path, **kw):
    # Each test gets its own copy of the index folder, so writes never leak between tests.
    import shutil

    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    return Settings(
        data_dir=data, cache_dir=root / "cache", embedder="hashing", api_keys=(KEY,), device="cpu", **kw
    )


class FakeSentiment:
    name = "fake"

    def score(self, texts):
        return np.asarray([-0.9 if "broke" in t or "awful" in t else 0.9 for t in texts])


def _with_fake_sentiment(s):
    services = build_services(s)
    services.sentiment = Once(lambda: FakeSentiment())
    return services


@pytest.fixture
def client(index_dir, tmp_path):
    app = create_app(_settings(index_dir, tmp_path), build=_with_fake_sentiment)
    with TestClient(app) as c:
        yield c


def _ev(action, client_id, pid, ts, field="id"):
    return {
        "action_name": action,
        "client_id": client_id,
        "query_id": "q-1",
        "timestamp": ts,
        "event_attributes": {
            "object": {"object_id": pid, "object_id_field": field},
            "position": {"ordinal": 0},
            "ip": "10.0.0.1",
        },
    }


def test_search_returns_products_facets_query_id_and_explanations(client):
    r = client.get("/v1/search", params={"q": "ThinkPad notebook", "k": 3, "explain": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"][0]["id"] == "p01" and len(body["results"]) == 3
    assert [x["rank"] for x in body["results"]] == [1, 2, 3]
    assert body["query_id"] and body["facets"]["brand"]["Lenovo"] >= 1
    assert sum(body["facets"]["price"].values()) <= body["total_candidates"]
    top = body["results"][0]
    assert top["product"]["title"].startswith("Lenovo ThinkPad")
    parts = top["explanation"]["contributions"]
    assert set(FEATURES) <= set(parts)
    assert sum(parts.values()) == pytest.approx(top["explanation"]["relevance"], abs=1e-6)
    # page 2 continues where page 1 ended
    p2 = client.get("/v1/search", params={"q": "ThinkPad notebook", "k": 3, "page": 2}).json()
    assert [x["rank"] for x in p2["results"]] == [4, 5, 6]
    assert not {x["id"] for x in p2["results"]} & {x["id"] for x in body["results"]}


def test_search_filters_post_body_and_hybrid_pipeline(client):
    r = client.get("/v1/search", params=[("q", "printer"), ("brand", "Canon")])
    assert r.status_code == 200 and {x["product"]["brand"] for x in r.json()["results"]} == {"Canon"}
    r = client.post("/v1/search", json={"q": "printer", "k": 2, "pipeline": "hybrid", "explain": True})
    assert r.status_code == 200 and len(r.json()["results"]) == 2
    assert set(r.json()["results"][0]["explanation"]["sources"]) <= {"bm25", "vector"}
    r = client.post("/v1/search", json={"q": "printer", "weights": {"bm25": 2.0}, "explain": True})
    assert r.status_code == 200
    r = client.post("/v1/search", json={"q": "printer", "weights": {"clicks": 1.0}})
    assert r.status_code == 422 and "unknown fusion feature" in r.json()["error"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": ""}, "q"),
        ({"q": "x" * 10_000}, "q"),
        ({"q": "laptop", "k": -1}, "k"),
        ({"q": "laptop", "k": 0}, "k"),
        ({"q": "laptop", "diversity": 2}, "diversity"),
        ({"q": "laptop", "price_min": -5}, "price_min"),
        ({"q": "laptop", "user_id": "has space"}, "user_id"),
    ],
)
def test_bad_search_input_is_422_with_the_field(client, params, field):
    r = client.get("/v1/search", params=params)
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"].endswith(field)


@pytest.mark.parametrize("q", ["*:*", '{"query": {"match_all": {}}}', "Ünïcödé ノート 💻", "   laptop   "])
def test_odd_queries_are_just_text(client, q):
    r = client.get("/v1/search", params={"q": q})
    assert r.status_code == 200, r.text


def test_whitespace_query_is_refused(client):
    r = client.get("/v1/search", params={"q": "   "})
    assert r.status_code == 422 and "empty" in r.json()["error"]


def test_similar_items_exclude_the_product_and_unknown_is_404(client):
    r = client.get("/v1/recommend/similar/p01", params={"k": 5})
    assert r.status_code == 200, r.text
    ids = [x["id"] for x in r.json()["results"]]
    assert len(ids) == 5 and "p01" not in ids and len(set(ids)) == 5
    assert r.json()["strategy"] == "similar"
    assert client.get("/v1/recommend/similar/nope").status_code == 404


def test_events_drive_user_recommendations_popularity_and_erasure(client):
    cold = client.get("/v1/recommend/user/shopper-1").json()
    assert cold["strategy"] == "none" and cold["results"] == []
    now = int(time.time() * 1000)
    events = [
        _ev("click", "shopper-1", "p01", now - 5000),
        _ev("add_to_cart", "shopper-1", "p02", now - 4000),
        _ev("purchase", "shopper-1", "p02", now - 3000),
        _ev("purchase", "shopper-2", "p01", now - 2000),
        _ev("purchase", "shopper-2", "p02", now - 1000),
        _ev("impression", "shopper-3", "B0SOMEASIN", now, field="asin"),
    ]
    # the shop's backend (admin key) vouches for these: they may move popularity and trending
    r = client.post("/v1/events", json={"events": events}, headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 6, "duplicates": 0, "resolved": 5}
    again = client.post("/v1/events", json={"events": events[:2]}, headers={"X-API-Key": KEY}).json()
    assert again == {"accepted": 0, "duplicates": 2, "resolved": 0}

    recs = client.get("/v1/recommend/user/shopper-1", params={"k": 5}).json()
    assert recs["strategy"] == "profile"
    ids = [x["id"] for x in recs["results"]]
    assert ids and "p02" not in ids  # already bought
    new = client.get("/v1/recommend/user/brand-new-shopper").json()
    assert new["strategy"] == "trending" and new["results"][0]["id"] in {"p01", "p02"}

    # popularity and personal affinity reach the search explanation
    body = client.get(
        "/v1/search", params={"q": "notebook", "user_id": "shopper-1", "explain": "true"}
    ).json()
    feats = {x["id"]: x["explanation"]["features"] for x in body["results"]}
    assert feats["p02"]["popularity"] > 0 and feats["p01"]["personal_affinity"] != 0

    # co-interaction: shoppers who engaged with p01 also engaged with p02
    sim = client.get("/v1/recommend/similar/p01", params={"k": 10, "diversity": 0}).json()
    by_id = {x["id"]: x for x in sim["results"]}
    assert by_id["p02"]["explanation"]["features"]["co_interaction"] == pytest.approx(1.0)

    # erasure needs the key, then removes the shopper's events and profile
    assert client.delete("/v1/users/shopper-1").status_code == 401
    r = client.delete("/v1/users/shopper-1", headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["erased_records"] >= 3
    assert client.get("/v1/recommend/user/shopper-1").json()["strategy"] == "trending"
    assert client.delete("/v1/users/shopper-1", headers={"X-API-Key": KEY}).status_code == 404


def test_stored_events_survive_a_restart_without_private_fields(index_dir, tmp_path):
    s = _settings(index_dir, tmp_path)
    now = int(time.time() * 1000)
    with TestClient(create_app(s)) as c:
        assert (
            c.post("/v1/events", json={"events": [_ev("purchase", "s9", "p03", now)]}).json()["accepted"] == 1
        )
    log = (s.embedded_dir / "ubi_events.jsonl").read_text()
    assert "10.0.0.1" not in log and "p03" in log
    with TestClient(create_app(s)) as c:
        assert c.get("/v1/recommend/user/s9").json()["strategy"] == "profile"


def test_bad_events_are_refused_whole_with_their_index(client):
    good = _ev("click", "s1", "p01", int(time.time() * 1000))
    bad = {"action_name": "click", "timestamp": 1}  # no client_id
    r = client.post("/v1/events", json={"events": [good, bad]})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] in ("events.1", "events.1.client_id")
    assert "client_id" in r.json()["error"]
    assert client.post("/v1/events", json={"events": []}).status_code == 422
    assert client.get("/v1/recommend/user/s1").json()["strategy"] == "none"  # nothing was stored


def test_writes_need_a_valid_api_key(client):
    body = {"title": "Acme rocket skates", "brand": "Acme", "price": 99}
    assert client.put("/v1/products/x1", json=body).status_code == 401
    r = client.put("/v1/products/x1", json=body, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and "wrong" not in r.text
    assert (
        client.post("/v1/reviews", json={"reviews": [{"product_id": "p01", "text": "ok"}]}).status_code == 401
    )
    assert client.delete("/v1/products/p01").status_code == 401


def test_product_writes_show_in_search_and_delete_is_404_after(client):
    h = {"X-API-Key": KEY}
    r = client.put(
        "/v1/products/x1", json={"title": "Acme rocket skates", "brand": "Acme", "price": 99}, headers=h
    )
    assert r.status_code == 200 and r.json()["written"] == 1
    hits = client.get("/v1/search", params={"q": "rocket skates"}).json()["results"]
    assert hits[0]["id"] == "x1"
    r = client.put("/v1/products/x1", json={"id": "x2", "title": "t"}, headers=h)
    assert r.status_code == 422
    r = client.post("/v1/products", json={"products": [{"id": "x3", "price": 5}]}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] in ("products.0", "products.0.title")
    assert client.delete("/v1/products/x1", headers=h).json()["deleted"] == 1
    assert client.delete("/v1/products/x1", headers=h).status_code == 404
    assert client.get("/v1/recommend/similar/x1").status_code == 404


def test_a_typo_is_corrected_and_said_and_exact_searches_as_typed(client):
    body = client.get("/v1/search", params={"q": "thinkpda notebook", "k": 3}).json()
    assert body["corrected_query"] == "thinkpad notebook" and body["query"] == "thinkpda notebook"
    assert body["results"][0]["id"] == "p01"
    interp = body["interpretation"]
    assert interp["corrections"] == [{"from": "thinkpda", "to": "thinkpad", "edits": 1}]
    assert interp["searched_query"] == "thinkpad notebook" and interp["exact"] is False
    exact = client.get("/v1/search", params={"q": "thinkpda notebook", "k": 3, "exact": "true"}).json()
    assert exact["corrected_query"] is None and exact["interpretation"]["exact"] is True
    assert exact["interpretation"]["searched_query"] == "thinkpda notebook"
    # the word being typed is completed; a finished word is not
    typing = client.get("/v1/search", params={"q": "espresso mach", "k": 1}).json()
    assert typing["interpretation"]["completion"] == {"prefix": "mach", "completed": "machine"}
    assert typing["results"][0]["id"] == "p27" and typing["corrected_query"] is None
    done = client.post("/v1/search", json={"q": "espresso mach ", "k": 1}).json()
    assert done["interpretation"]["completion"] is None


def test_a_word_written_after_start_up_is_never_corrected_away(client):
    h = {"X-API-Key": KEY}
    # "thinkpod" is one edit from the catalog's "thinkpad", but since this write a real product name
    r = client.put("/v1/products/x9", json={"title": "Thinkpod hoverboard", "brand": "Acme"}, headers=h)
    assert r.status_code == 200
    body = client.get("/v1/search", params={"q": "thinkpod ", "k": 1}).json()
    assert body["corrected_query"] is None and body["results"][0]["id"] == "x9"
    assert (
        client.get("/v1/search", params={"q": "thinkpud ", "k": 1}).json()["corrected_query"] == "thinkpad "
    )


def test_reviews_change_a_products_sentiment(client):
    h = {"X-API-Key": KEY}
    reviews = [
        {"product_id": "p01", "text": f"awful, it broke after {i} days", "rating": 1} for i in range(30)
    ]
    r = client.post("/v1/reviews", json={"reviews": reviews}, headers=h)
    assert r.status_code == 200 and r.json()["added"] == 30, r.text
    r = client.post("/v1/reviews", json={"reviews": [{"product_id": "ghost", "text": "fine"}]}, headers=h)
    assert r.status_code == 200 and r.json()["added"] == 0 and "ghost" in r.json()["errors"][0]
    top = client.get("/v1/search", params={"q": "ThinkPad notebook", "k": 1}).json()["results"][0]
    assert top["id"] == "p01" and top["product"]["sentiment"] < -0.5 and top["product"]["review_count"] == 30


def test_health_ready_metrics_openapi_and_storefront(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["products"] == 30
    client.get("/v1/search", params={"q": "laptop"})
    text = client.get("/metrics").text
    assert 'shoprank_requests_total{endpoint="/v1/search",method="GET",status="200"}' in text
    assert "shoprank_stage_seconds_bucket" in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/search", "/v1/events", "/v1/recommend/similar/{product_id}", "/v1/users/{user_id}"} <= set(
        paths
    )
    page = client.get("/")
    assert page.status_code == 200 and "/v1/search" in page.text


def test_backend_down_is_503_then_recovers(index_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(app_module, "RETRY_AFTER_S", 0.0)
    s = _settings(index_dir, tmp_path)
    calls = {"n": 0}

    def flaky(settings: Settings) -> Services:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise BackendUnavailableError("OpenSearch at http://127.0.0.1:9 is unreachable; start it")
        return build_services(settings)

    with TestClient(create_app(s, build=flaky)) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/v1/search", params={"q": "laptop"})
        assert r.status_code == 503 and "unreachable" in r.json()["error"]
        assert c.get("/readyz").status_code == 200  # third build works
        assert c.get("/v1/search", params={"q": "laptop"}).status_code == 200


def test_overload_is_429(index_dir, tmp_path):
    s = _settings(index_dir, tmp_path, max_inflight=1)
    gate, entered = threading.Event(), threading.Event()

    def slow(settings: Settings) -> Services:
        services = build_services(settings)
        real = services.search

        def blocking(*a, **kw):
            entered.set()
            gate.wait(10)
            return real(*a, **kw)

        services.search = blocking  # type: ignore[method-assign]
        return services

    with TestClient(create_app(s, build=slow)) as c:
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=c.get("/v1/search", params={"q": "laptop"})))
        t.start()
        assert entered.wait(10)
        busy = c.get("/v1/search", params={"q": "laptop"})
        gate.set()
        t.join(10)
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
    assert first["r"].status_code == 200


def test_oversized_body_is_413(index_dir, tmp_path):
    s = _settings(index_dir, tmp_path, max_body_bytes=1000)
    with TestClient(create_app(s)) as c:
        r = c.post("/v1/search", json={"q": "x" * 2000})
        assert r.status_code == 413 and "smaller" in r.json()["error"]


def test_old_events_expire_with_their_profiles(index_dir, tmp_path):
    s = _settings(index_dir, tmp_path, event_ttl_days=1)
    old = int((time.time() - 3 * 86400) * 1000)
    fresh = int(time.time() * 1000)
    with TestClient(create_app(s)) as c:
        body = {
            "events": [
                _ev("purchase", "old-shopper", "p01", old),
                _ev("purchase", "new-shopper", "p02", fresh),
            ]
        }
        assert c.post("/v1/events", json=body, headers={"X-API-Key": KEY}).json()["accepted"] == 2
        assert c.get("/v1/recommend/user/old-shopper").json()["strategy"] == "trending"  # profile expired
        assert c.get("/v1/recommend/user/new-shopper").json()["strategy"] == "profile"
    with TestClient(create_app(s)) as c:  # a restart deletes what is past the retention time
        log = (s.embedded_dir / "ubi_events.jsonl").read_text()
        assert "old-shopper" not in log and "new-shopper" in log


@pytest.mark.parametrize(
    "log_name", ["esci_ubi/ubi_queries_events.ndjson", "chorus_icecat/ubi_events_synthetic.zip"]
)
def test_shared_ubi_logs_post_as_they_are(client, icecat_dir, log_name):
    """The storefront can send the shared UBI logs' event documents unchanged."""
    from indexer.events import read_ubi_log

    path = icecat_dir.parent / log_name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    docs = [dict(e.raw) for e in read_ubi_log(path).events[:500]]
    r = client.post("/v1/events", json={"events": docs})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] + body["duplicates"] == len(docs) and body["accepted"] > 400


def test_reviews_without_a_sentiment_model_are_503_not_a_client_error(index_dir, tmp_path):
    """The request is fine; the service lacks the model (was 422, which told the client to fix it)."""
    with TestClient(create_app(_settings(index_dir, tmp_path))) as c:
        body = {"reviews": [{"product_id": "p01", "text": "works well"}]}
        r = c.post("/v1/reviews", json=body, headers={"X-API-Key": KEY})
        assert r.status_code == 503 and "SHOPRANK_SENTIMENT_PATH" in r.json()["error"]


def test_review_prior_strength_reaches_the_search_ranking(index_dir, tmp_path):
    """SHOPRANK_REVIEW_PRIOR_STRENGTH shrinks the sentiment feature of search, not only the
    numbers shown: with no prior three awful reviews count in full, with a strong one hardly."""
    seen = {}
    for strength in (0.0, 1000.0):
        where = tmp_path / f"prior-{strength:g}"
        where.mkdir()
        s = _settings(index_dir, where, review_prior_strength=strength)
        with TestClient(create_app(s, build=_with_fake_sentiment)) as c:
            reviews = [{"product_id": "p02", "text": f"awful, broke ({i})", "rating": 1} for i in range(3)]
            assert (
                c.post("/v1/reviews", json={"reviews": reviews}, headers={"X-API-Key": KEY}).status_code
                == 200
            )
            body = c.get(
                "/v1/search", params={"q": "HP Pavilion notebook", "k": 10, "explain": "true"}
            ).json()
            seen[strength] = next(x for x in body["results"] if x["id"] == "p02")["explanation"]["features"]
    assert seen[0.0]["sentiment"] == pytest.approx(-0.9, abs=1e-6)
    assert abs(seen[1000.0]["sentiment"]) < 0.01


def test_event_expiry_follows_the_clock_not_the_arrival_of_events(index_dir, tmp_path):
    """Expiry used to run only when events arrived; it now keeps to its own schedule."""
    s = _settings(index_dir, tmp_path, event_ttl_days=1, event_expiry_every_s=3600)
    services = build_services(s)
    t = [time.time()]
    services.clock = lambda: t[0]
    services.last_expiry = t[0]
    stored = services.events.add([ev_obj("purchase", "c1", "p01", t[0] - 0.5 * 86400)]).accepted
    assert stored == 1
    t[0] += 1800  # half an hour: not yet time to look
    assert services.expire_events() == 0
    t[0] += 1.5 * 86400  # the event is now older than a day, and the hour has passed
    assert services.expire_events() == 1 and services.events.events() == []


def test_a_serving_app_runs_event_expiry_on_its_own(index_dir, tmp_path):
    s = _settings(index_dir, tmp_path, event_expiry_every_s=0.05)
    calls = []

    def build(settings):
        services = build_services(settings)
        services.expire_events = lambda: calls.append(1) or 0  # type: ignore[method-assign]
        return services

    with TestClient(create_app(s, build=build)):
        for _ in range(200):  # no request at all: the schedule alone calls it
            if len(calls) >= 2:
                break
            time.sleep(0.05)
    assert len(calls) >= 2


def ev_obj(action, client, pid, t):
    from indexer.events import Event

    return Event(action, client, t, object_id=pid, object_id_field="id", product_id=pid)


def test_suggest_completes_as_the_shopper_types_typos_forgiven(client):
    body = client.get("/v1/suggest", params={"q": "espresso mach"}).json()
    assert body["query"] == "espresso mach"
    top = body["suggestions"][0]
    assert top["text"] == "espresso machine" and top["products"] == 1 and top["source"] == "catalog"
    assert client.get("/v1/suggest", params={"q": "wireles"}).json()["suggestions"][0]["text"] == "wireless"
    many = client.get("/v1/suggest", params={"q": "l", "k": 3}).json()["suggestions"]
    assert 0 < len(many) <= 3 and all(s["text"].startswith("l") for s in many)
    assert client.get("/v1/suggest", params={"q": "qqqqzz"}).json()["suggestions"] == []
    assert client.get("/v1/suggest", params={"q": ""}).status_code == 422
    assert client.get("/v1/suggest", params={"q": "x", "k": 11}).status_code == 422


def test_suggest_runs_on_the_event_loop_not_in_the_thread_pool():
    from plugin_api.http.routes import router

    # a keystroke's suggestions take well under a millisecond of CPU (bounded: q ≤ 200 characters);
    # the hop to a worker thread and back cost more than that (bench/results/typing_load)
    route = next(r for r in router.routes if getattr(r, "path", "") == "/v1/suggest")
    assert inspect.iscoroutinefunction(route.endpoint)


def test_a_price_in_the_query_is_a_soft_preference_shown_and_explained(client):
    body = client.get("/v1/search", params={"q": "samsung tv under 800", "k": 5, "explain": "true"}).json()
    interp = body["interpretation"]
    assert interp["searched_query"] == "samsung tv"
    assert interp["constraints"] == [
        {"kind": "price", "low": None, "high": 800.0, "unit": "", "text": "under 800"}
    ]
    by_id = {r["id"]: r for r in body["results"]}
    assert by_id["p05"]["explanation"]["features"]["constraint_match"] == 1.0  # 749: under 800
    assert by_id["p05"]["explanation"]["contributions"]["constraint_match"] > 0
    over = [r for r in body["results"] if r["product"]["price"] is not None and r["product"]["price"] > 800]
    assert all(r["explanation"]["features"]["constraint_match"] == -1.0 for r in over)
    # soft: a product over the price is ranked lower, not removed; a price filter is the hard limit
    hard = client.get("/v1/search", params={"q": "samsung tv", "price_max": 800, "k": 5}).json()
    assert all(r["product"]["price"] <= 800 for r in hard["results"])


def test_the_vocabulary_refresh_picks_up_new_products(index_dir, tmp_path):
    s = _settings(index_dir, tmp_path, vocabulary_refresh_s=1.0)
    services = build_services(s)
    assert services.suggest("zorbl", 5) == []
    products = services.store
    from indexer.product import Product

    vec = services.embedder.encode(["Zorblax hoverboard"])
    for i in range(3):
        products.upsert([Product(f"z{i}", "Zorblax hoverboard", brand="Acme")], vec)
    assert services.refresh_vocabulary() is False  # not yet due
    services.clock = lambda: time.time() + 5
    assert services.refresh_vocabulary() is True
    top = services.suggest("zorbl", 5)
    assert top and top[0].text.startswith("zorblax") and top[0].products == 3
    assert services.vocabulary is not None and services.vocabulary.rewriter.lexicon.known("zorblax")
    services.clock = lambda: time.time() + 10
    assert services.refresh_vocabulary() is False  # due, but nothing new since: not rebuilt


def test_the_product_type_the_query_names_is_said_and_ranks(client):
    body = client.get("/v1/search", params={"q": "notebook ", "k": 5, "explain": "true"}).json()
    interp = body["interpretation"]
    assert interp["product_type"] == "notebook" and interp["types"][0] == "notebook"
    top = body["results"][0]
    assert top["explanation"]["features"]["type_match"] == 1.0
    assert top["explanation"]["contributions"]["type_match"] > 0
    # a word that ends no type: no intent, the feature is neutral
    none = client.get("/v1/search", params={"q": "lenovo ", "k": 1, "explain": "true"}).json()
    assert none["interpretation"]["product_type"] is None and none["interpretation"]["types"] == []
    assert none["results"][0]["explanation"]["features"]["type_match"] == 0.0


class _Rebuilt:
    """A backend whose live index's manifest a test changes (an alias swapped by a rebuild)."""

    def __init__(self, inner):
        self.inner = inner
        self.live = inner.manifest()

    def manifest(self):
        return self.live

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_an_index_rebuilt_for_another_model_is_refused_until_it_fits_again(index_dir, tmp_path, caplog):
    import dataclasses

    from indexer.errors import IndexMismatchError
    from indexer.product import Product
    from ranker.base import SearchOptions, SearchRequest

    services = build_services(_settings(index_dir, tmp_path))
    # as on OpenSearch, where another process's `shoprank index` can swap the alias under a service
    services.settings = services.settings.model_copy(
        update={"backend": "opensearch", "index_check_s": 3600.0}
    )
    services.backend = backend = _Rebuilt(services.backend)
    fits = backend.live
    backend.live = dataclasses.replace(fits, model_id="another-model")

    def search():
        return services.search(
            SearchRequest("laptop", k=3), SearchOptions(), client_id=None, pipeline="hybrid"
        )

    assert search()[0].hits  # within the check period the service still trusts its start-up check
    with pytest.raises(IndexMismatchError, match="another-model"):  # a write looks now
        services.upsert_products([Product("new-1", "Laptop stand")])
    with pytest.raises(IndexMismatchError, match="another-model"):
        services.delete_product("p01")
    for _ in range(3):
        with pytest.raises(IndexMismatchError):
            search()  # from now on searches are refused too, with the reason
    refusals = [r for r in caplog.records if "refusing" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelname == "ERROR"  # one line per state change
    assert services.backend.fetch(["p01"])  # nothing was deleted or written
    assert not services.backend.fetch(["new-1"])
    with TestClient(create_app(services.settings, build=lambda _: services)) as c:
        for path in ("/v1/search?q=laptop", "/v1/recommend/similar/p01", "/v1/recommend/user/u1"):
            r = c.get(path)
            assert r.status_code == 503 and "another-model" in r.json()["error"], path
    backend.live = fits  # rebuilt again for this service's model
    services.last_index_check = float("-inf")  # as if never checked, whatever the uptime
    assert search()[0].hits and services.index_mismatch is None


def test_what_a_search_reads_is_built_before_the_service_is_ready(index_dir, tmp_path):
    """No shopper's search builds an index: the embedded BM25 and strict-leg indexes exist once
    build_services returns (it runs before /readyz answers 200), and warming logs no query."""
    services = build_services(_settings(index_dir, tmp_path))
    view = services.backend._view  # type: ignore[attr-defined]
    assert view.base.bm25.n_docs == len(view.base) and view.base.strict.n_docs == len(view.base)
    assert services.events.queries(["warm up"]) == {}


def _count_full_searches(services) -> list[str]:
    """The queries the `full` pipeline runs from now on (a cache hit runs none)."""
    from types import MappingProxyType

    inner = services.searchers["full"]
    calls: list[str] = []

    class Counting:
        def search(self, req, opts=None):
            calls.append(req.query)
            return inner.search(req, opts)

    services.searchers = MappingProxyType({**services.searchers, "full": Counting()})
    return calls


def test_anonymous_searches_come_from_the_result_cache_until_the_shop_changes(index_dir, tmp_path):
    """A repeated anonymous search is answered from the cache with the same results the pipeline
    gives; a shopper's own request goes to the pipeline, and so does the first search a refresh
    interval after a product write, a review or an event (within it, the cached answer stands)."""

    from indexer.product import Product
    from indexer.reviews import Review
    from ranker.base import SearchOptions, SearchRequest

    s = _settings(index_dir, tmp_path)
    assert s.result_cache_size > 0  # on by default
    services = build_services(s)
    calls = _count_full_searches(services)
    assert services.results.refresh_s == 1.0  # the default
    now = [0.0]
    services.results.clock = lambda: now[0]

    def ids(q="laptop", opts=None, client=None):
        res, _ = services.search(
            SearchRequest(q, k=5), opts or SearchOptions(), client_id=client, pipeline="full"
        )
        return [h.id for h in res.hits], res

    first, _ = ids()
    again, res = ids()
    assert again == first and len(calls) == 1 and set(res.timings_ms) == {"result_cache"}
    plain = build_services(_settings(index_dir, tmp_path / "plain", result_cache_size=0))
    assert [
        h.id
        for h in plain.search(SearchRequest("laptop", k=5), SearchOptions(), client_id=None, pipeline="full")[
            0
        ].hits
    ] == first  # same as uncached
    ids(opts=SearchOptions(diversity=0.5))  # other options: another entry
    assert len(calls) == 2
    ids(opts=SearchOptions(user_id="u1"), client="u1")
    ids(opts=SearchOptions(user_id="u1"), client="u1")  # a shopper's answer is theirs: never cached
    assert len(calls) == 4
    vec = services.embedder.encode(["Laptop laptop laptop"])
    services.store.upsert([Product("cache-1", "Laptop laptop laptop")], vec)
    now[0] += 0.5
    assert ids()[0] == first and len(calls) == 4  # within the refresh interval: the cached answer
    now[0] += 0.5
    assert "cache-1" in ids()[0] and len(calls) == 5  # a product write, 1 s on: answered anew
    ids()
    assert len(calls) == 5
    services.add_events([ev_obj("purchase", "u2", first[-1], time.time())])
    now[0] += 1.0
    ids()
    assert len(calls) == 6  # an event: answered anew
    services.reviews.add([Review(first[0], "great laptop", 5, None, 0.9)])
    now[0] += 1.0
    ids()
    assert len(calls) == 7  # a review: answered anew
    ids()
    assert len(calls) == 7


def test_a_price_or_stock_write_keeps_cached_rankings_and_shows_the_new_record(index_dir, tmp_path):
    """A write that changes only a product's price or stock cannot change the order of a search
    that neither filters nor prefers on price: its cached answer stands, with the product's new
    record in it; a search that does filter or prefer on price is answered anew (once the
    refresh interval passes), and every answer is the one an uncached service gives."""
    from dataclasses import replace

    from ranker.base import Filters, SearchOptions, SearchRequest

    s = _settings(index_dir, tmp_path)
    services = build_services(s)
    calls = _count_full_searches(services)
    now = [0.0]
    services.results.clock = lambda: now[0]

    def search(q="laptop", filters=None):
        return services.search(
            SearchRequest(q, k=5, filters=filters or Filters()),
            SearchOptions(),
            client_id=None,
            pipeline="full",
        )[0]

    requests = [
        ("laptop", Filters()),
        ("laptop", Filters(price_max=5000.0)),
        ("laptop under 5000", Filters()),
    ]
    first = [search(q, f) for q, f in requests]
    assert len(calls) == 3
    top = services.backend.fetch([first[0].hits[0].id])[first[0].hits[0].id]
    cheaper = replace(top, price=(top.price or 100.0) / 2, in_stock=not top.in_stock)
    services.upsert_products([cheaper])
    now[0] += 1.0
    again = [search(q, f) for q, f in requests]
    assert len(calls) == 5 and calls[-2:] == ["laptop", "laptop under 5000"]  # the price ones anew
    assert [h.id for h in again[0].hits] == [h.id for h in first[0].hits]
    assert set(again[0].timings_ms) == {"result_cache"}
    assert again[0].hits[0].product == cheaper  # the cached order, the record as it is now
    plain = build_services(s.model_copy(update={"result_cache_size": 0}))
    for (q, f), got in zip(requests, again, strict=True):
        want = plain.search(
            SearchRequest(q, k=5, filters=f), SearchOptions(), client_id=None, pipeline="full"
        )[0]
        assert [(h.id, h.product) for h in got.hits] == [(h.id, h.product) for h in want.hits], q
    retitled = replace(cheaper, title=cheaper.title + " refurbished")
    services.upsert_products([retitled])
    now[0] += 1.0
    search()
    assert len(calls) == 6  # its text changed: every answer anew


def test_the_start_up_heap_is_frozen_out_of_the_collector(index_dir, tmp_path):
    """A full collection over the start-up heap stalled every request ~0.6 s (the serve_load p99):
    once the services are built, the app freezes what they hold."""
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    app = create_app(_settings(index_dir, tmp_path), build=_with_fake_sentiment)
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 200
        assert gc.get_freeze_count() > 1000


def test_the_result_cache_adopts_a_new_state_at_most_once_per_refresh_interval():
    from plugin_api.http.result_cache import ResultCache

    now = [10.0]
    cache = ResultCache(10, refresh_s=1.0, clock=lambda: now[0])
    assert cache.state("a") == "a"  # the first state is adopted at once
    assert cache.state("b") == "a"  # moved within the interval: the old one stands
    now[0] += 0.99
    assert cache.state("c") == "a"
    now[0] += 0.01
    assert cache.state("c") == "c"
    assert cache.state("c") == "c"
    at_once = ResultCache(10, refresh_s=0.0, clock=lambda: now[0])
    assert [at_once.state(s) for s in "xyz"] == ["x", "y", "z"]
