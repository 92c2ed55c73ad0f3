"""Shopper events: UBI parsing, durable stores (embedded + exact OpenSearch requests), the event model."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from indexer.embedded.events import EmbeddedEventStore
from indexer.errors import BadInputError
from indexer.events import (
    Event,
    QueryRecord,
    parse_event,
    parse_timestamp,
    read_ubi_log,
    resolve_products,
)
from indexer.opensearch.events import OpenSearchEventStore, events_body, queries_body
from indexer.product import Product
from ranker.recommend.recommender import is_duplicate
from ranker.signals.personalization import EventModel, PersonalizationConfig
from tests.unit.test_opensearch_requests import Call, FakeNode, fake_client

DAY = 86400.0


def ev(action: str, client: str, pid: str | None, t: float, **kw: Any) -> Event:
    return Event(action, client, t, object_id=pid, object_id_field="id", product_id=pid, **kw)


def test_parse_timestamp_accepts_millis_seconds_and_iso() -> None:
    assert parse_timestamp(1717527761998) == pytest.approx(1717527761.998)
    assert parse_timestamp(1717527761) == 1717527761.0
    assert parse_timestamp("2024-12-10T00:01:29.378Z") == pytest.approx(1733788889.378)
    assert parse_timestamp("1717527761998") == pytest.approx(1717527761.998)
    for bad in (None, True, "yesterday", [1]):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_parse_event_takes_the_ubi_fields_and_drops_private_ones() -> None:
    doc = {
        "action_name": "add_to_cart",
        "client_id": "c1",
        "query_id": "q1",
        "timestamp": 1717527762118,
        "event_attributes": {
            "object": {"object_id": "4033874254060", "object_id_field": "primary_ean"},
            "position": {"ordinal": 3},
            "session_id": "s1",
            "ip": "79.226.92.80",
            "browser": "Mozilla/5.0",
        },
    }
    e = parse_event(doc)
    assert (e.action_name, e.client_id, e.query_id, e.session_id, e.position) == (
        "add_to_cart",
        "c1",
        "q1",
        "s1",
        3,
    )
    assert (e.object_id, e.object_id_field) == ("4033874254060", "primary_ean")
    assert "79.226" not in json.dumps(e.raw) and "Mozilla" not in json.dumps(e.raw)
    assert parse_event(doc).id == e.id  # the same record twice: one id
    assert parse_event({**doc, "timestamp": 1717527762119}).id != e.id
    for bad, words in (
        ({**doc, "client_id": ""}, "client_id"),
        ({**doc, "action_name": None}, "action_name"),
        ({**doc, "timestamp": "soon"}, "timestamp"),
        ({**doc, "event_attributes": []}, "event_attributes"),
        ({**doc, "client_id": "x" * 300}, "limit"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_event(bad)


def test_resolve_products_by_id_and_by_ean() -> None:
    events = [
        Event("click", "c", 1.0, object_id="p1", object_id_field="id"),
        Event("click", "c", 2.0, object_id="p9", object_id_field="id"),  # not in the catalog
        Event("click", "c", 3.0, object_id="400", object_id_field="primary_ean"),
        Event("click", "c", 4.0, object_id="B01", object_id_field="asin"),
        Event("click", "c", 5.0, object_id="p1"),  # no field: an id
    ]
    out = resolve_products(events, {"400": "p2"}, {"p1", "p2"})
    assert [e.product_id for e in out] == ["p1", None, "p2", None, "p1"]


def test_ubi_log_shapes_and_bad_lines(tmp_path) -> None:
    chorus = tmp_path / "chorus.log"
    chorus.write_text(
        'ubi_queries\t{"query_id": "q1", "client_id": "c1", "user_query": "tv", "timestamp": 1717527761998}\n'
        'ubi_events\t{"action_name": "click", "client_id": "c1", "timestamp": 1717527762000}\n'
        "ubi_events\t{not json\n"
    )
    log = read_ubi_log(chorus)
    assert (len(log.queries), len(log.events), len(log.errors)) == (1, 1, 1)
    assert log.errors[0].line == 3 and "not JSON" in log.errors[0].reason
    bulk = tmp_path / "bulk.ndjson"
    bulk.write_text(
        '{"index": {"_index": "ubi_queries", "_id": "q1"}}\n'
        '{"query_id": "q1", "client_id": "c1", "user_query": "tv", "timestamp": "2024-12-10T00:01:29Z"}\n'
        '{"index": {"_index": "ubi_events", "_id": "e1"}}\n'
        '{"action_name": "impression", "client_id": "c1", "timestamp": "2024-12-10T00:01:29Z"}\n'
        '{"index": {"_index": "ubi_events", "_id": "e2"}}\n'
        '{"action_name": "impression", "timestamp": "2024-12-10T00:01:29Z"}\n'
    )
    log = read_ubi_log(bulk)
    assert (len(log.queries), len(log.events), len(log.errors)) == (1, 1, 1)
    assert "client_id" in log.errors[0].reason and log.errors[0].line == 6
    array = tmp_path / "events.json"
    array.write_text(json.dumps([{"action_name": "click", "client_id": "c", "timestamp": 1717527761998}]))
    assert len(read_ubi_log(array).events) == 1
    with pytest.raises(BadInputError, match="does not exist"):
        read_ubi_log(tmp_path / "missing.ndjson")


def test_shared_ubi_logs_load_as_they_are(icecat_dir) -> None:
    data = icecat_dir.parent
    chorus = read_ubi_log(data / "chorus_icecat" / "ubi_events_synthetic.zip")
    assert not chorus.errors and len(chorus.events) == 26828 and len(chorus.queries) == 4130
    assert sum(e.object_id_field == "primary_ean" for e in chorus.events) > 3000
    esci_path = data / "esci_ubi" / "ubi_queries_events.ndjson"
    if esci_path.exists():
        esci = read_ubi_log(esci_path)
        assert not esci.errors and len(esci.events) == 3448 and len(esci.queries) == 473


def test_embedded_event_store_dedupes_survives_restart_erases_and_expires(tmp_path) -> None:
    store = EmbeddedEventStore(tmp_path)
    a, b, c = (
        ev("click", "c1", "p1", 100.0),
        ev("purchase", "c1", "p2", 200.0),
        ev("click", "c2", "p1", 300.0),
    )
    rep = store.add([a, b, a], [QueryRecord("q1", "c1", "tv", 99.0)])
    assert (rep.accepted, rep.duplicates, rep.resolved, rep.queries) == (2, 1, 2, 1)
    assert [e.id for e in rep.stored] == [a.id, b.id]
    with open(store.events_path, "a") as fh:
        fh.write('{"torn": ')  # a crash mid-append
    again = EmbeddedEventStore(tmp_path)
    assert [e.id for e in again.events()] == [a.id, b.id]
    assert again.add([a, c]).accepted == 1
    assert [e.timestamp for e in again.events(since=150.0)] == [200.0, 300.0]
    assert again.erase_client("c1") == 3  # two events and the query
    assert [e.client_id for e in EmbeddedEventStore(tmp_path).events()] == ["c2"]
    assert again.expire(before=301.0) == 1 and again.events() == []
    assert "c1" not in store.queries_path.read_text()


def test_popularity_shrinks_few_events_and_decays_old_ones() -> None:
    model = EventModel(PersonalizationConfig(half_life_days=10, popularity_prior=1.0))
    now = 1000 * DAY
    events = [ev("purchase", f"c{i}", "many", now - i) for i in range(20)]
    events += [ev("purchase", "x", "one", now)]
    events += [ev("purchase", f"o{i}", "old", now - 40 * DAY) for i in range(20)]
    events += [ev("impression", "y", "seen", now)]
    model.add(events)
    pop = model.popularity(["many", "one", "old", "seen", "none"])
    assert pop["many"] > pop["old"] > 0  # same count, four half-lives older
    assert pop["many"] > pop["one"] > 0
    assert "seen" not in pop and "none" not in pop  # impressions alone carry no weight
    assert all(0 < v < 1 for v in pop.values())
    assert [p for p, _ in model.trending(2)] == ["many", "old"]


def test_profiles_co_interactions_and_forgetting() -> None:
    brands = {"p1": "Lenovo", "p2": "Lenovo", "p3": "HP"}
    cats = {"p1": "Notebook", "p2": "Mouse", "p3": "Notebook"}
    model = EventModel(brand_of=lambda pid: brands.get(pid, ""), category_of=lambda pid: cats.get(pid, ""))
    model.add(
        [
            ev("click", "c1", "p1", 10.0),
            ev("purchase", "c1", "p2", 20.0),
            ev("declined_product", "c1", "p3", 30.0),
            ev("click", "c2", "p1", 10.0),
            ev("click", "c2", "p3", 11.0),
        ]
    )
    prof = model.profile("c1")
    assert prof is not None and prof.owned == {"p2"} and prof.items["p3"] < 0
    assert prof.brand_share("lenovo") == 1.0 and prof.brand_share("HP") == 0.0
    # the declined notebook (-1) cancels the clicked one (+1): all positive engagement is the mouse
    assert prof.category_share("mouse") == 1.0 and prof.category_share("Notebook") == 0.0
    # cosine-normalized: p1~p3 share one shopper of two each; p2 is heavier (a purchase)
    assert model.co_interactions("p1") == pytest.approx(
        {"p3": 1.0, "p2": (1 / 10**0.5) / (1 / 2**0.5)}, rel=1e-3
    )
    vec = model.profile_vector(prof, {"p1": np.array([1.0, 0.0]), "p2": np.array([0.0, 1.0])})
    assert vec is not None and np.linalg.norm(vec) == pytest.approx(1.0) and vec[1] > vec[0]
    aff = model.affinity(prof, {"p1": np.array([0.0, 2.0]), "p3": np.array([1.0, 0.0])}, brands, vec, cats)
    assert aff["p1"] > aff["p3"]
    cos_p1 = float(np.dot(vec, [0.0, 1.0]))
    assert aff["p1"] == pytest.approx(0.5 * cos_p1 + 0.25 * 1.0 + 0.25 * 0.0)
    c2 = model.profile("c2")
    assert c2 is not None
    collab = model.co_scores(c2)
    assert collab["p2"] > 0 and max(collab.values()) == pytest.approx(1.0)  # p2 reached through p1
    assert model.forget_client("c1") and model.profile("c1") is None
    assert model.co_interactions("p1") == {"p3": 1.0}
    assert not model.forget_client("c1")


def test_duplicates_are_same_ean_or_same_model() -> None:
    a = Product("a", "HP dv7 silver", brand="HP", name="dv7-1211ea", ean=("1",))
    assert is_duplicate(a, Product("b", "other", ean=("1", "2")))
    assert is_duplicate(a, Product("c", "HP dv7 black", brand="hp", name="DV7-1211EA"))
    assert not is_duplicate(a, Product("d", "HP dv7 silver", brand="HP", name="dv7-1311ea", ean=("3",)))


def _bulk(statuses: dict[str, int]) -> Any:
    def reply(call: Call) -> tuple[int, Any]:
        items = []
        for line in call.body:
            op = next(iter(line))
            if op in ("create", "index", "delete"):
                meta = line[op]
                st = statuses.get(meta["_id"], 200 if op == "delete" else 201)
                item = {"_index": meta["_index"], "_id": meta["_id"], "status": st}
                if st >= 300:
                    item["error"] = {"type": "version_conflict_engine_exception"}
                items.append({op: item})
        return 200, {"took": 1, "errors": any(s >= 300 for s in statuses.values()), "items": items}

    return reply


def test_opensearch_event_store_requests() -> None:
    a, b = ev("click", "c1", "p1", 100.0), ev("purchase", "c1", "p2", 200.5)
    node = FakeNode()
    node.on("HEAD", "/ubi_events", (404, {}), (200, {}))
    node.on("HEAD", "/ubi_queries", (404, {}), (200, {}))
    node.on("PUT", "/ubi_events", (200, {"acknowledged": True}))
    node.on("PUT", "/ubi_queries", (200, {"acknowledged": True}))
    node.on("POST", "/_bulk", _bulk({b.id: 409}))
    store = OpenSearchEventStore(fake_client(node))
    rep = store.add([a, b, a], [QueryRecord("q1", "c1", "tv", 99.0, ("p1",))])
    assert (rep.accepted, rep.duplicates, rep.queries) == (1, 2, 1) and rep.stored == [a]
    calls = {(c.method, c.path): c for c in node.calls}
    assert calls[("PUT", "/ubi_events")].body == events_body()
    assert calls[("PUT", "/ubi_queries")].body == queries_body()
    bulk = calls[("POST", "/_bulk")]
    assert "refresh" not in bulk.params  # durable in the translog; reads refresh first
    assert bulk.body[0] == {"create": {"_index": "ubi_events", "_id": a.id}}
    assert bulk.body[1] == {**a.to_dict(), "timestamp": 100000}
    assert bulk.body[4] == {"index": {"_index": "ubi_queries", "_id": "q1"}}
    assert bulk.body[5] == {
        "query_id": "q1",
        "client_id": "c1",
        "user_query": "tv",
        "timestamp": 99000,
        "query_response_object_ids": ["p1"],
    }

    node.on("POST", "/ubi_events/_refresh", (200, {}))
    node.on("POST", "/ubi_queries/_refresh", (200, {}))
    node.on(
        "POST",
        "/ubi_events/_search",
        (
            200,
            {"hits": {"hits": [{"_source": {**a.to_dict(), "timestamp": 100000}, "sort": [100000, a.id]}]}},
        ),
    )
    assert store.events(since=50.0) == [a]
    search = [c for c in node.calls if c.path == "/ubi_events/_search"][-1].body
    assert search == {
        "size": 1000,
        "query": {"range": {"timestamp": {"gte": 50000}}},
        "sort": [{"timestamp": "asc"}, {"event_id": "asc"}],
    }

    def ids_page(call: Call) -> tuple[int, Any]:
        ids = {"/ubi_events/_search": ["e1", "e2"], "/ubi_queries/_search": ["q1"]}[call.path]
        return 200, {"hits": {"hits": [{"_id": i, "sort": [i]} for i in ids]}}

    node.on("POST", "/ubi_events/_search", ids_page)
    node.on("POST", "/ubi_queries/_search", ids_page)
    node.on("POST", "/_bulk", _bulk({}))
    assert store.erase_client("c1") == 3
    erase = [c for c in node.calls if c.path.endswith("_search")][-2:]
    assert erase[0].body == {
        "size": 1000,
        "_source": False,
        "query": {"term": {"client_id": "c1"}},
        "sort": [{"event_id": "asc"}],
    }
    assert erase[1].body["sort"] == [{"query_id": "asc"}]
    deletes = [c for c in node.calls if c.path == "/_bulk"][-2:]
    assert deletes[0].body == [
        {"delete": {"_index": "ubi_events", "_id": "e1"}},
        {"delete": {"_index": "ubi_events", "_id": "e2"}},
    ]
    assert deletes[0].params["refresh"] == "true"
    assert store.expire(before=100.0) == 3
    expire = [c for c in node.calls if c.path.endswith("_search")][-2]
    assert expire.body["query"] == {"range": {"timestamp": {"lt": 100000}}}


def test_opensearch_backend_resolves_eans_with_one_terms_query() -> None:
    from ranker.retrieval.opensearch import OpenSearchBackend

    node = FakeNode()
    hits = [{"_id": "p2", "_source": {"ean": ["400", "401"]}}]
    node.on("POST", "/shoprank-products/_search", (200, {"hits": {"hits": hits}}))
    backend = OpenSearchBackend(fake_client(node), alias="shoprank-products")
    assert backend.ids_for_eans(["400", "999", "400"]) == {"400": "p2"}
    assert node.calls[-1].body == {
        "size": 4,
        "_source": ["ean"],
        "track_total_hits": False,
        "query": {"bool": {"filter": [{"terms": {"ean": ["400", "999"]}}]}},
    }


def test_a_torn_last_line_does_not_swallow_the_next_append(tmp_path) -> None:
    from indexer.durable_log import append_records, read_records

    path = tmp_path / "log.jsonl"
    assert append_records(path, [{"a": 1}]) == 1
    with open(path, "a") as fh:
        fh.write('{"half": ')
    assert append_records(path, [{"b": 2}, {"c": 3}]) == 2
    assert [r for _, r in read_records(path)] == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_profiles_expire_after_their_time_to_live() -> None:
    model = EventModel(PersonalizationConfig(profile_ttl_days=1))
    model.add([ev("purchase", "c1", "p1", 10 * DAY)])
    assert model.profile("c1", now=10.5 * DAY) is not None
    assert model.profile("c1", now=11.5 * DAY) is None
    assert (
        EventModel().profile is not None and EventModel(PersonalizationConfig()).config.profile_ttl_days == 0
    )


def test_the_event_model_counts_each_event_once() -> None:
    model = EventModel()
    a = ev("purchase", "c1", "p1", 10.0)
    assert model.add([a, a]) == 1 and model.add([a]) == 0
    assert model.profile("c1").items["p1"] == pytest.approx(5.0)  # type: ignore[union-attr]


def test_embedded_query_records_are_stored_once(tmp_path) -> None:
    store = EmbeddedEventStore(tmp_path)
    q = QueryRecord("q1", "c1", "tv", 1.0)
    assert store.add([], [q, q]).queries == 1
    assert EmbeddedEventStore(tmp_path).add([], [q, QueryRecord("q2", "c1", "radio", 2.0)]).queries == 1
    assert store.queries_path.read_text().count('"query_id"') == 2
