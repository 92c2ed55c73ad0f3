"""Events are untrusted input: bounded, finite, never fatal, and unable to buy a ranking."""

from __future__ import annotations

import json
import math
import time

import pytest
from fastapi.testclient import TestClient

from indexer.embedded.events import EmbeddedEventStore
from indexer.events import (
    MAX_CLOCK_SKEW_S,
    MAX_EVENT_DEPTH,
    Event,
    QueryRecord,
    parse_event,
    parse_timestamp,
)
from plugin_api.http.app import create_app
from plugin_api.http.services import build_services
from ranker.signals.influence import InfluencePolicy
from ranker.signals.personalization import EventModel, PersonalizationConfig
from tests.unit.test_api import KEY, _settings, index_dir  # noqa: F401  (fixture)

DAY = 86400.0
NOW = 1_780_000_000.0  # 2026-05-28


def doc(**kw):
    d = {
        "action_name": "click",
        "client_id": "c1",
        "timestamp": NOW * 1000,
        "event_attributes": {"object": {"object_id": "p01", "object_id_field": "id"}},
    }
    d.update(kw)
    return d


@pytest.mark.parametrize(
    "ts, why",
    [
        (NOW * 1000 + 3 * 365 * DAY * 1000, "future"),
        ("2126-01-01T00:00:00Z", "future"),
        (float("nan"), "finite"),
        ("nan", "finite"),
        ("Infinity", "finite"),
        (float("inf"), "finite"),
        (12345, "before 2000"),
        ("1999-12-31T23:59:59Z", "before 2000"),
    ],
)
def test_timestamps_are_finite_and_bounded(ts, why) -> None:
    with pytest.raises(ValueError, match=why):
        parse_timestamp(ts, now=NOW)


def test_a_clock_a_little_ahead_is_fine() -> None:
    assert parse_timestamp((NOW + MAX_CLOCK_SKEW_S - 1) * 1000, now=NOW) == pytest.approx(
        NOW + MAX_CLOCK_SKEW_S - 1
    )


def nested(depth: int):
    v: dict = {}
    for _ in range(depth):
        v = {"a": v}
    return v


@pytest.mark.parametrize(
    "bad, why",
    [
        ({"event_attributes": {"position": {"ordinal": float("inf")}}}, "not finite"),
        ({"event_attributes": {"position": {"ordinal": -1}}}, "ordinal"),
        ({"event_attributes": {"position": {"ordinal": 2.5}}}, "ordinal"),
        ({"event_attributes": {"position": {"ordinal": True}}}, "ordinal"),
        ({"event_attributes": {"position": 3}}, "position"),
        ({"event_attributes": nested(500)}, "deeper"),
        ({"extra": nested(MAX_EVENT_DEPTH)}, "deeper"),
        ({"extra": {"score": float("nan")}}, "finite"),
        ({"extra": "x" * 20_000}, "bytes"),
        ({"client_id": "a shopper"}, "client_id"),  # could never be erased via /v1/users/{id}
        ({"client_id": "a/b"}, "client_id"),
        ({"client_id": "c" * 200}, "client_id"),
    ],
)
def test_bad_events_are_refused_with_a_reason(bad, why) -> None:
    d = doc()
    attrs = bad.pop("event_attributes", None)
    if attrs is not None:
        d["event_attributes"] = {**d["event_attributes"], **attrs}
    d.update(bad)
    with pytest.raises(ValueError, match=why):
        parse_event(d, now=NOW)


def test_a_whole_ordinal_as_float_is_kept() -> None:
    d = doc()
    d["event_attributes"]["position"] = {"ordinal": 3.0}
    assert parse_event(d, now=NOW).position == 3


def ev(action, client, pid, t, **kw):
    return Event(action, client, t, object_id=pid, object_id_field="id", product_id=pid, **kw)


def test_event_dates_far_apart_never_overflow_the_model() -> None:
    model = EventModel(PersonalizationConfig(half_life_days=1))
    model.add([ev("click", "a", "p1", 0.0)])
    model.add([ev("click", "b", "p2", 5_000 * 365 * DAY)])  # 1.8M half-lives later
    model.add([ev("purchase", "c", "p3", 1.0)])
    assert set(model.popularity(["p1", "p2", "p3"])) <= {"p1", "p2", "p3"}
    assert model.trending(1)[0][0] == "p2"


def test_reanchoring_keeps_every_ratio() -> None:
    """One batch (no re-anchoring needed) equals the same events fed in two far-apart batches
    (the second forces the anchor forward and rescales everything)."""
    cfg = PersonalizationConfig(half_life_days=1)
    old = [ev("purchase", f"c{i}", f"p{i % 3}", 10 * DAY + i) for i in range(9)]
    old += [ev("click", "c0", "p1", 10 * DAY + 20), ev("click", "c1", "p0", 10 * DAY + 30)]
    new = [ev("click", "n", "p2", 100 * DAY), ev("purchase", "n", "p0", 100 * DAY + 1)]
    one, two = EventModel(cfg), EventModel(cfg)
    one.add(old + new)
    two.add(old)
    two.add(new)
    ids = ["p0", "p1", "p2"]
    assert two.popularity(ids) == pytest.approx(one.popularity(ids))
    for p in ids:
        assert two.co_interactions(p) == pytest.approx(one.co_interactions(p))


def test_stored_records_that_cannot_be_events_are_quarantined_not_fatal(tmp_path) -> None:
    store = EmbeddedEventStore(tmp_path)
    good = ev("click", "c1", "p1", time.time() - 10)
    store.add([good])
    future = {**ev("click", "c2", "p2", time.time() + 3 * 365 * DAY).to_dict()}
    with open(store.events_path, "a") as fh:
        fh.write(json.dumps(future) + "\n")
        fh.write(json.dumps({"action_name": "click", "client_id": "c3", "timestamp": "NaN"}) + "\n")
        fh.write(json.dumps({"action_name": 5, "client_id": "c3", "timestamp": 1}) + "\n")
    again = EmbeddedEventStore(tmp_path)
    assert [e.id for e in again.events()] == [good.id]
    quarantined = [json.loads(x) for x in again.quarantine_path.read_text().splitlines()]
    assert len(quarantined) == 3 and "future" in quarantined[0]["reason"]
    assert quarantined[0]["record"]["client_id"] == "c2"
    # the log itself no longer holds them: the next start has nothing to quarantine
    assert len(again.events_path.read_text().splitlines()) == 1
    assert len(EmbeddedEventStore(tmp_path).events()) == 1


def test_expire_also_removes_records_dated_in_the_future(tmp_path) -> None:
    store = EmbeddedEventStore(tmp_path)
    store.add(
        [ev("click", "c1", "p1", 100.0), ev("click", "c1", "p2", 200.0), ev("click", "c1", "p3", 900.0)]
    )
    assert store.expire(150.0, after=500.0) == 2
    assert [e.product_id for e in store.events()] == ["p2"]


# -- influence ------------------------------------------------------------------------------


def test_unverified_browser_events_move_no_shared_signal() -> None:
    model = EventModel()
    model.add(
        [ev("purchase", f"fake{i}", "bag", NOW + i, trusted=False, received=NOW + i) for i in range(2000)]
    )
    model.add([ev("click", "real", "tv", NOW)])
    assert model.popularity(["bag"]) == {}
    assert [p for p, _ in model.trending(5)] == ["tv"]
    assert model.co_interactions("bag") == {}
    # ... but the fake shoppers' own profiles learned what they did
    prof = model.profile("fake7", now=NOW)
    assert prof is not None and prof.items["bag"] > 0 and "bag" in prof.owned


def test_verified_browser_events_weigh_a_click_and_are_capped_per_shopper_and_hour() -> None:
    policy = InfluencePolicy(untrusted_product_hourly=20.0)
    model = EventModel(PersonalizationConfig(half_life_days=1e6, influence=policy))
    # one shopper repeating a purchase: one click's worth
    model.add(
        [ev("purchase", "s", "a", NOW + i, trusted=False, verified=True, received=NOW + i) for i in range(50)]
    )
    assert model.profile("s", now=NOW).votes["a"] == pytest.approx(1.0, rel=1e-6)  # type: ignore[union-attr]
    # 2,000 new shoppers in one second: at most 20 votes this hour
    burst = [
        ev("click", f"n{i}", "b", NOW + 100, trusted=False, verified=True, received=NOW + 100)
        for i in range(2000)
    ]
    model.add(burst)
    mass_b = sum(p.votes.get("b", 0.0) for p in model._profiles.values())
    assert mass_b == pytest.approx(20.0, rel=1e-6)
    # a later hour has room again
    model.add([ev("click", "late", "b", NOW + 7200, trusted=False, verified=True, received=NOW + 7200)])
    assert model.profile("late", now=NOW + 7200).votes["b"] > 0  # type: ignore[union-attr]


def test_browser_votes_lift_a_product_no_one_bought_only_to_the_floor() -> None:
    policy = InfluencePolicy(untrusted_product_hourly=5.0, earned_ratio=1.0, earned_floor=2.0)
    model = EventModel(PersonalizationConfig(half_life_days=1e6, influence=policy))
    hours = [
        ev(
            "click",
            f"s{h}-{i}",
            "x",
            NOW + h * 3600 + i,
            trusted=False,
            verified=True,
            received=NOW + h * 3600 + i,
        )
        for h in range(24)
        for i in range(10)
    ]
    model.add(hours)
    assert model._mass["x"] == pytest.approx(2.0, rel=1e-6)  # 24 h × 5 votes, counted up to the floor
    # the shop's backend reports three sales: browsers may now add as much again
    model.add([ev("purchase", f"b{i}", "x", NOW + 100_000 + i) for i in range(3)])
    model.add([ev("click", "late", "x", NOW + 200_000, trusted=False, verified=True, received=NOW + 200_000)])
    assert model._trusted["x"] == pytest.approx(15.0) and model._mass["x"] == pytest.approx(
        15.0 + 17.0, rel=1e-6
    )


def test_a_browser_cannot_date_its_event_later_than_its_arrival() -> None:
    e = ev("click", "c", "p", NOW + 500, trusted=False, received=NOW)
    assert e.effective_time == NOW
    assert ev("click", "c", "p", NOW + 500).effective_time == NOW + 500  # trusted: as sent


def test_trusted_events_keep_their_weight_up_to_the_shopper_cap() -> None:
    model = EventModel()
    model.add([ev("purchase", "c1", "p1", NOW), ev("purchase", "c1", "p1", NOW + 1)])
    prof = model.profile("c1", now=NOW)
    assert (
        prof is not None
        and prof.items["p1"] == pytest.approx(10.0)
        and prof.votes["p1"] == pytest.approx(5.0)
    )


# -- through the API --------------------------------------------------------------------------


@pytest.fixture
def app_client(index_dir, tmp_path):  # noqa: F811
    def make(**kw):
        return TestClient(create_app(_settings(index_dir, tmp_path, **kw), build=build_services))

    return make


def _event(client_id, pid, *, qid=None, action="click", ts=None):
    return {
        "action_name": action,
        "client_id": client_id,
        "query_id": qid,
        "timestamp": (time.time() if ts is None else ts) * 1000,
        "event_attributes": {"object": {"object_id": pid, "object_id_field": "id"}},
    }


def test_api_refuses_bad_events_naming_them_and_stores_none(app_client) -> None:
    with app_client() as c:
        events_file = c.app.state.holder.get().events.events_path
        before = events_file.read_text() if events_file.exists() else ""
        cases = [
            {"events": [_event("c1", "p01"), _event("c1", "p02", ts=time.time() + 3 * 365 * DAY)]},
            {"events": [{**_event("c1", "p01"), "timestamp": "nan"}]},
            {"events": [{**_event("c1", "p01"), "event_attributes": nested(500)}]},
        ]
        for body in cases:
            r = c.post("/v1/events", json=body)
            assert r.status_code == 422, r.text
            assert r.json()["detail"][0]["field"].startswith("events.")
        raw = '{"events": [{"action_name": "click", "client_id": "c", "timestamp": 1e400}]}'
        r = c.post("/v1/events", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "finite" in r.text
        now_ms = int(time.time() * 1000)
        raw = (
            f'{{"events": [{{"action_name": "click", "client_id": "c", "timestamp": {now_ms},'
            ' "event_attributes": {"position": {"ordinal": 1e400}}}]}'
        )
        r = c.post("/v1/events", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        assert (events_file.read_text() if events_file.exists() else "") == before


def test_a_service_starts_over_a_future_dated_stored_event(index_dir, tmp_path) -> None:  # noqa: F811
    s = _settings(index_dir, tmp_path)
    store = EmbeddedEventStore(s.embedded_dir)
    with open(store.events_path, "a") as fh:  # as a service before this fix stored them
        fh.write(json.dumps(ev("click", "c", "p02", time.time() - 10).to_dict()) + "\n")
        fh.write(json.dumps(ev("click", "c", "p01", time.time() + 100 * 365 * DAY).to_dict()) + "\n")
    with TestClient(create_app(s, build=build_services)) as c:
        assert c.get("/readyz").status_code == 200
        assert c.get("/v1/recommend/user/c").status_code == 200


def test_fabricated_events_from_fake_shoppers_buy_no_ranking(app_client) -> None:
    with app_client() as c:

        def trending():
            return [
                x["id"] for x in c.get("/v1/recommend/user/nobody-new", params={"k": 5}).json()["results"]
            ]

        def similar():
            return [x["id"] for x in c.get("/v1/recommend/similar/p01", params={"k": 5}).json()["results"]]

        # a little real, trusted history (the shop's backend)
        real = [_event(f"r{i}", "p02", action="purchase") for i in range(3)]
        assert c.post("/v1/events", json={"events": real}, headers={"X-API-Key": KEY}).status_code == 200
        before_t, before_s = trending(), similar()
        target = next(pid for pid in ("p07", "p08", "p09", "p10") if pid not in before_s)
        for start in range(0, 2000, 1000):
            batch = [
                e
                for i in range(start, start + 1000, 2)
                for e in (
                    _event(f"fake{i}", target, action="purchase"),
                    _event(f"fake{i}", "p01", action="purchase"),
                )
            ]
            assert c.post("/v1/events", json={"events": batch}).status_code == 200
        assert trending() == before_t
        assert similar() == before_s
        pop = c.app.state.holder.get().event_model.popularity([target])
        assert pop == {}


def test_verified_clicks_count_and_are_bounded(app_client) -> None:
    with app_client() as c:
        svc = c.app.state.holder.get()
        for i in range(60):
            r = c.get("/v1/search", params={"q": "notebook", "user_id": f"s{i}", "k": 5})
            page = [x["id"] for x in r.json()["results"]]
            qid, shown = r.json()["query_id"], page[-1]
            # one click on what the search showed, one on a product it did not show
            other = next(p for p in ("p20", "p19", "p18", "p17", "p16", "p15") if p not in page)
            c.post(
                "/v1/events",
                json={"events": [_event(f"s{i}", shown, qid=qid), _event(f"s{i}", other, qid=qid)]},
            )
        votes = sum(p.votes.get(shown, 0.0) for p in svc.event_model._profiles.values())
        policy = svc.event_model.config.influence
        assert 0 < votes <= policy.untrusted_product_hourly * 2  # at most two arrival hours here
        assert math.isclose(sum(p.votes.get(other, 0.0) for p in svc.event_model._profiles.values()), 0.0)


def test_public_keys_gate_browser_events_and_admin_keys_mark_them_trusted(app_client) -> None:
    with app_client(public_keys=("pk_live",)) as c:
        body = {"events": [_event("c1", "p01", action="purchase")]}
        assert c.post("/v1/events", json=body).status_code == 401
        assert c.post("/v1/events", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/events", json=body, headers={"X-API-Key": "pk_live"}).status_code == 200
        svc = c.app.state.holder.get()
        stored = svc.events.events()
        assert [(e.trusted, e.verified) for e in stored] == [(False, False)]
        body2 = {"events": [_event("c2", "p02", action="purchase")]}
        assert c.post("/v1/events", json=body2, headers={"X-API-Key": KEY}).status_code == 200
        assert svc.event_model.popularity(["p01", "p02"]).keys() == {"p02"}
        page = c.get("/").text
        assert 'name="shoprank-public-key" content="pk_live"' in page


def test_opensearch_event_store_reads_queries_by_id_expires_the_future_and_skips_bad_records() -> None:
    from indexer.opensearch.events import OpenSearchEventStore
    from tests.unit.test_opensearch_requests import FakeNode, fake_client

    node = FakeNode()
    node.on("HEAD", "/ubi_queries", (200, {}))
    node.on("HEAD", "/ubi_events", (200, {}))
    node.on(
        "POST",
        "/ubi_queries/_mget",
        (
            200,
            {
                "docs": [
                    {
                        "_id": "q1",
                        "found": True,
                        "_source": {
                            "client_id": "c1",
                            "timestamp": 99000,
                            "query_response_object_ids": ["p1", "p2"],
                        },
                    },
                    {"_id": "q2", "found": False},
                ]
            },
        ),
    )
    store = OpenSearchEventStore(fake_client(node))
    got = store.queries(["q2", "q1", "q1"])
    assert got == {"q1": QueryRecord("q1", "c1", "", 99.0, ("p1", "p2"))}
    assert node.calls[-1].body == {"ids": ["q1", "q2"]}

    def empty(call):
        return 200, {"hits": {"hits": []}}

    node.on("POST", "/ubi_events/_refresh", (200, {}))
    node.on("POST", "/ubi_queries/_refresh", (200, {}))
    node.on("POST", "/ubi_events/_search", empty)
    node.on("POST", "/ubi_queries/_search", empty)
    assert store.expire(100.0, after=500.0) == 0
    q = [c for c in node.calls if c.path == "/ubi_events/_search"][-1].body["query"]
    assert q == {
        "bool": {
            "should": [{"range": {"timestamp": {"lt": 100000}}}, {"range": {"timestamp": {"gt": 500000}}}],
            "minimum_should_match": 1,
        }
    }
    good = ev("click", "c1", "p1", 100.0)
    hits = [
        {
            "_id": "bad",
            "_source": {"action_name": "click", "client_id": "c", "timestamp": "NaN"},
            "sort": [0, "a"],
        },
        {"_id": good.id, "_source": {**good.to_dict(), "timestamp": 100000}, "sort": [1, "b"]},
    ]
    node.on("POST", "/ubi_events/_search", (200, {"hits": {"hits": hits}}))
    assert store.events() == [good]


def test_a_service_starts_over_any_stored_garbage(index_dir, tmp_path) -> None:  # noqa: F811
    """Valid JSON of the wrong shape in any log beside the index (events, queries, reviews,
    product updates) is skipped or quarantined; the service starts and serves."""
    s = _settings(index_dir, tmp_path)
    root = s.embedded_dir
    version = (root / "CURRENT").read_text().strip()
    junk = [[1, 2], "text", 7, None, {"op": "weird"}, {"timestamp": [1]}, {"product_id": 5, "sentiment": "x"}]
    for path in (
        root / "ubi_events.jsonl",
        root / "ubi_queries.jsonl",
        root / "reviews.jsonl",
        root / "versions" / version / "updates.jsonl",
    ):
        with open(path, "a") as fh:
            fh.writelines(json.dumps(j) + "\n" for j in junk)
    with TestClient(create_app(s, build=build_services)) as c:
        assert c.get("/readyz").status_code == 200
        r = c.get("/v1/search", params={"q": "notebook", "user_id": "u1"})
        assert r.status_code == 200 and r.json()["results"]
        assert c.get("/v1/recommend/similar/p01").status_code == 200
