"""``bench.hostile_inputs`` cases 1–3, 6 and 7: what a client sends. Batches with a repeated id,
impossible event times (and a restart over them), fabricated events, absurd numbers, odd ids."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from urllib.parse import quote

from bench.common import REPO
from bench.live.hostile_client import Bench, product, raw_event, ubi_event

Y2126_MS = 4_922_000_000_000  # 2125-12-21, in epoch milliseconds


def case_batch(b: Bench) -> None:
    batch = [
        product("hi-dup-1", "Hostile duplicate first"),
        product("hi-ok-1", "Hostile innocent bystander"),
        product("hi-dup-1", "Hostile duplicate second"),
    ]
    b.expect(
        1,
        "POST /v1/products: one new id twice in a batch (+1 other)",
        "POST",
        "/v1/products",
        422,
        body={"products": batch},
        key=True,
    )
    for pid in ("hi-dup-1", "hi-ok-1"):
        status, ms, _ = b.call("GET", f"/v1/recommend/similar/{pid}")
        b.row(
            1,
            f"GET similar/{pid} after the refused batch",
            "404",
            status,
            ms,
            "the batch is applied whole or not at all",
            status == 404,
        )
    b.expect(
        1, "DELETE /v1/products/hi-dup-1 (never stored)", "DELETE", "/v1/products/hi-dup-1", 404, key=True
    )
    new = [
        product("hi-new-1", "Hostile bench notebook stand"),
        product("hi-new-2", "Hostile bench printer cartridge"),
    ]
    status, ms, d = b.call("POST", "/v1/products", body={"products": new}, key=True)
    b.row(
        1,
        "POST /v1/products: two new distinct ids (control)",
        "200",
        status,
        ms,
        f"written {(d or {}).get('written')}",
        status == 200 and (d or {}).get("written") == 2,
    )
    if status == 200:
        b.known |= {p["id"]: p["title"] for p in new}
    b.consistency(1, "searches (5 queries × full/hybrid, k 100) + 6 similar lists: hit id = record")


def case_time(b: Bench) -> None:
    """Case 2: events far in the future or at NaN/Infinity; then a restart over such records
    planted in the log as an older version stored them, and ``shoprank events expire``."""
    _bad_timestamps(b)
    # What an older version stored: the valid record copied with a time in 2126 or NaN, and garbage.
    stored = [json.loads(ln) for ln in b.events_file.read_text().splitlines() if ln.strip()]
    planted = [
        {**stored[-1], "event_id": "hi-plant-2126", "timestamp": Y2126_MS / 1000},
        {**stored[-1], "event_id": "hi-plant-nan", "timestamp": float("nan")},
    ]
    _sigterm(b)
    with open(b.events_file, "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in planted)
        fh.write("not json at all\n[1, 2]\n")
    if not _start_over_planted(b):
        return
    b.consistency(2, "after the restart: searches + similar, hit id = record, count unchanged")
    with open(b.events_file, "a") as fh:  # one more, planted while the server runs
        fh.write(json.dumps({**planted[0], "event_id": "hi-plant-live"}) + "\n")
    _expire(b)


def _bad_timestamps(b: Bench) -> None:
    """Events dated 2126 or NaN/Infinity (as strings and raw JSON literals) are refused; one valid
    event (the control) is taken."""
    for request, body, raw in (
        ("event dated 2126 (admin key)", {"events": [ubi_event("hi-t1", "p01", ts=Y2126_MS)]}, None),
        ('"timestamp": "nan" (admin key)', {"events": [ubi_event("hi-t2", "p01", ts="nan")]}, None),
        ('"timestamp": "Infinity" (admin key)', {"events": [ubi_event("hi-t3", "p01", ts="Infinity")]}, None),
        ('raw JSON "timestamp": NaN', None, raw_event('"timestamp": NaN')),
        ('raw JSON "timestamp": Infinity', None, raw_event('"timestamp": Infinity')),
        ('raw JSON "timestamp": -Infinity', None, raw_event('"timestamp": -Infinity')),
    ):
        b.expect(2, "POST /v1/events: " + request, "POST", "/v1/events", 422, body=body, raw=raw, key=True)
    b.expect(
        2,
        "POST /v1/events: event dated 2126, no key",
        "POST",
        "/v1/events",
        422,
        body={"events": [ubi_event("hi-t4", "p01", ts=Y2126_MS)]},
    )
    status, ms, _ = b.call(
        "POST", "/v1/events", body={"events": [ubi_event("hi-t5", "p02", "purchase")]}, key=True
    )
    b.row(2, "POST /v1/events: one valid event (control)", "200", status, ms, "", status == 200)


def _sigterm(b: Bench) -> None:
    """SIGTERM to the server: it must exit within 20 s (else it is killed)."""
    proc = b.srv.proc
    assert proc is not None
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc: int | str = proc.wait(20)
    except subprocess.TimeoutExpired:
        rc = "still running after 20 s (killed)"
        b.srv.kill()
    b.row(
        2,
        "SIGTERM to the server",
        "exits within 20 s",
        f"rc {rc}",
        (time.monotonic() - t0) * 1000,
        "rc -15: uvicorn re-raises SIGTERM once its graceful shutdown is done" if rc == -15 else "",
        rc in (0, -signal.SIGTERM),
    )


def _start_over_planted(b: Bench) -> bool:
    """Start the server again over the 4 planted records: it must get ready with them quarantined
    or dropped. Whether it got ready."""
    try:
        ready_s: float | None = b.srv.start(timeout=90)
        status_r: str = "ready"
    except RuntimeError as e:
        ready_s, status_r = None, f"failed: {e}"
    quarantine = b.srv.sr.data / "index" / "ubi_events.quarantine.jsonl"
    kept = quarantine.read_text() if quarantine.exists() else ""
    q_lines = len(kept.splitlines())
    log_text = b.events_file.read_text()
    # the three planted lines that parse as JSON are quarantined; the one that does not is
    # read as a torn append (durable_log) and dropped when the log is rewritten
    gone = not any(m in log_text for m in ("hi-plant-2126", "hi-plant-nan", "not json", "[1, 2]"))
    b.row(
        2,
        "start again over 4 planted bad records (2126, NaN, not JSON, not an object)",
        "ready",
        status_r,
        None if ready_s is None else ready_s * 1000,
        f"quarantine holds {q_lines} record(s) (not-JSON line quarantined: {'not json' in kept}); "
        f"all 4 out of the log: {gone}; log notes {b.srv.log_notes()}",
        ready_s is not None and q_lines >= 3 and gone,
    )
    return ready_s is not None


def _expire(b: Bench) -> None:
    """``shoprank events expire`` run by another process must drop the 2126 record planted live."""
    t0 = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "plugin_api.cli.main",
            "events",
            "expire",
            "--data-dir",
            str(b.srv.sr.data),
            "--embedder",
            "hashing",
        ],
        env=b.srv.sr.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    left = "hi-plant-live" in b.events_file.read_text()
    b.row(
        2,
        "`shoprank events expire` with a 2126 record planted in the live log",
        "exit 0, record gone",
        f"rc {out.returncode}",
        (time.monotonic() - t0) * 1000,
        f"{out.stdout.strip()[:80]}; 2126 record still in the log: {left}",
        out.returncode == 0 and not left,
    )


def _trending(b: Bench) -> list[str]:
    d = b.call("GET", "/v1/recommend/user/hi-brand-new-shopper", params={"k": 100, "diversity": 0})[2]
    return [x["id"] for x in (d or {}).get("results", [])]


def _search_rank(b: Bench, q: str, pid: str) -> int | None:
    d = b.call("GET", "/v1/search", params={"q": q, "k": 100, "diversity": 0})[2]
    ids = [x["id"] for x in (d or {}).get("results", [])]
    return ids.index(pid) + 1 if pid in ids else None


def case_flood(b: Bench, fake: int, target: str = "p19", query: str = "laptop") -> None:
    seed = [
        ubi_event(f"hi-shop-{p}-{i}", p, "purchase")
        for n, p in enumerate(("p01", "p02", "p03", "p04", "p05"))
        for i in range(5 - n)
    ]
    status, ms, _ = b.call("POST", "/v1/events", body={"events": seed}, key=True)
    b.row(
        3,
        f"{len(seed)} trusted purchases on p01–p05 (admin key; gives trending an order)",
        "200",
        status,
        ms,
        "",
        status == 200,
    )
    trend0, rank0 = _trending(b), _search_rank(b, query, target)
    events = [ubi_event(f"hi-fake-{i}", target, "purchase" if i % 2 else "click") for i in range(fake)]
    t0, statuses, accepted = time.perf_counter(), [], 0
    for i in range(0, fake, 1000):
        s, _, d = b.call("POST", "/v1/events", body={"events": events[i : i + 1000]})
        statuses.append(s)
        accepted += (d or {}).get("accepted", 0) if s == 200 else 0
    ms = (time.perf_counter() - t0) * 1000
    trend1, rank1 = _trending(b), _search_rank(b, query, target)
    t_rank = lambda t: t.index(target) + 1 if target in t else None  # noqa: E731
    b.row(
        3,
        f"{fake:,} click/purchase events on {target} from {fake:,} fake ids, no key",
        "200 (browser events), nothing shared moves",
        "/".join(map(str, statuses)),
        ms,
        f"accepted {accepted}; trending rank {t_rank(trend0)} → {t_rank(trend1)} (top 5 {trend0[:5]} → "
        f"{trend1[:5]}); “{query}” rank {rank0} → {rank1}",
        all(s == 200 for s in statuses) and trend0 == trend1 and rank0 == rank1,
    )


def case_numbers(b: Bench) -> None:
    b.expect(
        6,
        'event with raw "position": {"ordinal": 1e400}',
        "POST",
        "/v1/events",
        422,
        key=True,
        raw=raw_event(f'"timestamp": {int(time.time() * 1000)}, "position": {{"ordinal": 1e400}}'),
    )
    nested = '{"a": ' * 500 + "1" + "}" * 500
    b.expect(
        6,
        "event_attributes nested 500 deep",
        "POST",
        "/v1/events",
        422,
        key=True,
        raw=(
            f'{{"events": [{{"action_name": "click", "client_id": "hi-deep", "timestamp": '
            f'{int(time.time() * 1000)}, "event_attributes": {nested}}}]}}'
        ).encode(),
    )
    b.expect(
        6,
        'POST /v1/search raw "weights": {"bm25": NaN}',
        "POST",
        "/v1/search",
        422,
        raw=b'{"q": "notebook", "weights": {"bm25": NaN}}',
    )
    b.expect(6, 'POST /v1/search "k": true', "POST", "/v1/search", 422, body={"q": "notebook", "k": True})


def case_ids(b: Bench) -> None:
    for label, pid in (
        ("'/'", "hi/slash"),
        ("a space", "hi space"),
        ("NUL", "hi\u0000nul"),
        ("10 kB", "h" * 10_240),
    ):
        status, ms, d = b.call(
            "POST", "/v1/products", body={"products": [product(pid, "Hostile id")]}, key=True
        )
        check = "refused"
        if status == 200:  # then it must be reachable: PUT and DELETE by its id
            path = "/v1/products/" + quote(pid, safe="")
            put = b.call("PUT", path, body={"title": "Hostile id again"}, key=True)[0]
            delete = b.call("DELETE", path, key=True)[0]
            check = f"accepted; PUT → {put}, DELETE → {delete}"
        b.row(7, f"POST /v1/products with an id holding {label}", "422", status, ms, check, status == 422)
