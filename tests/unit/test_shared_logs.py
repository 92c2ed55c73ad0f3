"""The embedded event, query and review logs shared by several processes (``serve --workers N``).

Two store objects on one folder stand for two workers: each keeps its own place in the logs and
its own memory, and they meet only in the files and the ``flock`` (taken per open file, so two
objects in one process exclude each other as two processes do).
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from indexer.durable_log import FileLock, SharedLog, read_records
from indexer.embedded.events import EmbeddedEventStore
from indexer.embedded.reviews import EmbeddedReviewStore
from indexer.events import Event, QueryRecord, client_hash
from indexer.reviews import Review
from ranker.signals.personalization import EventModel

NOW = 1_700_000_000.0


def ev(action: str, client: str, pid: str, t: float) -> Event:
    return Event(action, client, t, object_id=pid, object_id_field="id", product_id=pid)


def test_shared_log_reads_what_others_appended_and_all_of_a_replaced_log(tmp_path: Path) -> None:
    lock_a, lock_b = FileLock(tmp_path / ".lock"), FileLock(tmp_path / ".lock")
    a, b = SharedLog(tmp_path / "x.jsonl", lock_a), SharedLog(tmp_path / "x.jsonl", lock_b)
    with lock_b(exclusive=False):
        whole, recs = b.read_new()
        assert (whole, list(recs)) == (False, [])  # no log yet
    with lock_a(exclusive=True):
        a.read_new()
        a.append([{"n": 1}, {"n": 2}])
    with lock_a(exclusive=False):
        assert list(a.read_new()[1]) == []  # its own appends count as read
    with lock_b(exclusive=False):
        whole, recs = b.read_new()
        assert whole and [d["n"] for _, d in recs] == [1, 2]
    with lock_a(exclusive=True):
        a.read_new()
        a.append([{"n": 3}])
    with lock_b(exclusive=False):
        whole, recs = b.read_new()
        assert not whole and [d["n"] for _, d in recs] == [3]  # only the tail
    with lock_b(exclusive=True):
        b.read_new()
        b.replace([{"n": 9}])
    for log, lock in ((a, lock_a), (b, lock_b)):
        with lock(exclusive=False):
            whole, recs = log.read_new()
            assert whole and [d["n"] for _, d in recs] == [9]


def test_a_worker_pulls_the_events_another_stored_once(tmp_path: Path) -> None:
    a, b = EmbeddedEventStore(tmp_path), EmbeddedEventStore(tmp_path)
    first = ev("click", "c1", "p1", NOW)
    a.add([first])
    assert [e.id for e in b.events()] == [first.id]  # b's start: all stored so far, nothing pulled
    assert b.pull().events == []
    later = [ev("purchase", "c2", "p2", NOW + 1), ev("click", "c3", "p3", NOW + 2)]
    a.add(later)
    assert a.pull().events == []  # its own writes are not handed back
    assert [e.id for e in b.pull().events] == [e.id for e in later]
    assert b.pull().events == []
    assert b.add([later[0]]).accepted == 0  # stored by a: a duplicate here too
    assert len(list(read_records(a.events_path))) == 3


def test_a_search_on_one_worker_verifies_a_click_posted_to_another(tmp_path: Path) -> None:
    a, b = EmbeddedEventStore(tmp_path), EmbeddedEventStore(tmp_path)
    assert b.queries(["q1"]) == {}
    a.add([], [QueryRecord("q1", "shopper", "tv", NOW, ("p1", "p2"))])
    got = b.queries(["q1"])
    assert got["q1"].client_id == "shopper" and got["q1"].object_ids == ("p1", "p2")
    assert b.add([], [QueryRecord("q1", "shopper", "tv", NOW)]).queries == 0  # stored once


def test_an_erasure_on_one_worker_reaches_the_others(tmp_path: Path) -> None:
    a, b = EmbeddedEventStore(tmp_path), EmbeddedEventStore(tmp_path)
    a.add([ev("click", "gone", "p1", NOW), ev("click", "stays", "p2", NOW)])
    b.events()
    unseen = ev("purchase", "other", "p3", NOW + 5)
    a.add([unseen])  # stored by a before the erasure, not yet pulled by b
    assert a.erase_client("gone") == 1
    pulled = b.pull()
    assert pulled.erased == {client_hash("gone")}
    assert [e.id for e in pulled.events] == [unseen.id]  # the rewrite loses nothing b had not seen
    assert {e.client_id for e in b.events()} == {"stays", "other"}
    assert b.pull().erased == set()
    assert "gone" not in (tmp_path / "ubi_erasures.jsonl").read_text()  # a hash, not the id
    c = EmbeddedEventStore(tmp_path)  # a worker started after the erasure: nothing to forget
    c.events()
    assert c.pull().erased == set()
    # an expiry by b rewrites the log again: a re-reads it whole, with nothing to pull twice
    assert b.expire(before=NOW + 1) == 1
    assert a.pull().events == [] and {e.client_id for e in a.events()} == {"other"}


def test_a_followed_erasure_forgets_the_profile_in_the_event_model(tmp_path: Path) -> None:
    a, b = EmbeddedEventStore(tmp_path), EmbeddedEventStore(tmp_path)
    a.add([ev("purchase", "gone", "p1", NOW)])
    model = EventModel()
    model.add(b.events())
    assert model.client_ids() == ["gone"]
    a.erase_client("gone")
    erased = b.pull().erased
    for client in [c for c in model.client_ids() if client_hash(c) in erased]:
        model.forget_client(client)
    assert model.profile("gone") is None


def _append_events(root: str, worker: int, n: int) -> None:
    store = EmbeddedEventStore(root)
    for i in range(0, n, 10):
        store.add([ev("click", f"w{worker}-c{j}", f"p{j % 7}", NOW + j) for j in range(i, i + 10)])


def test_two_processes_appending_at_once_lose_and_tear_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_events, args=(str(tmp_path), w, 400)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = (tmp_path / "ubi_events.jsonl").read_text().splitlines()
    assert len(lines) == 800 and all(line.startswith("{") and line.endswith("}") for line in lines)
    assert len({e.id for e in EmbeddedEventStore(tmp_path).events()}) == 800


def test_a_review_stored_by_one_worker_is_in_the_others_aggregates(tmp_path: Path) -> None:
    a, b = EmbeddedReviewStore(tmp_path), EmbeddedReviewStore(tmp_path)
    assert b.stats() == {}
    review = Review("p1", "great", 5.0, "2024-01-01", sentiment=0.9)
    assert a.add([review]).added == 1
    assert b.stats()["p1"].count == 1
    assert b.add([review]).added == 0  # a stored it: a duplicate for b too
