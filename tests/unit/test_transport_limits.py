"""Transport limits against a real uvicorn server on 127.0.0.1, driven through raw sockets.

Chunked bodies over the limit, stalled uploads (slowloris), Content-Length lies and request heads
that never end; plus the admission queue. The read deadline is set low, so each test takes seconds.
"""

from __future__ import annotations

import json
import select
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from plugin_api.http.app import create_app
from plugin_api.http.limits import Guard, uvicorn_options
from plugin_api.http.services import Services, build_services
from plugin_api.settings import Settings
from tests.conftest import build_fixture_index

KEY = "transport-key-1"
READ_TIMEOUT_S = 1.0
WAIT_S = 15.0  # how long a socket read may block before the test gives up on an answer


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_index(tmp_path_factory.mktemp("transport"))


def _settings(root: Path, tmp_path: Path, **kw: object) -> Settings:
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    return Settings(
        data_dir=data,
        cache_dir=root / "cache",
        embedder="hashing",
        api_keys=(KEY,),
        device="cpu",
        read_timeout_s=READ_TIMEOUT_S,
        **kw,
    )


@contextmanager
def serving(settings: Settings) -> Iterator[int]:
    """``shoprank serve``'s uvicorn transport options in a thread; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)


def _head(method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"X-API-Key: {KEY}", *extra, "", ""]
    return "\r\n".join(lines).encode()


def _read_until_closed(s: socket.socket) -> tuple[bytes, bool]:
    """Everything the server sends, and whether it closed the connection within WAIT_S."""
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except TimeoutError:
        return out, False
    except ConnectionResetError:
        pass
    return out, True


def _read_response(s: socket.socket) -> bytes:
    """One response (head and Content-Length body) from a connection that stays open."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += s.recv(65536)
    head, body = raw.split(b"\r\n\r\n", 1)
    length = next(
        int(h.split(b":")[1]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length")
    )
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def _status(raw: bytes) -> int:
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    return int(raw.split(b" ", 2)[1])


def _json_body(raw: bytes) -> dict:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def _get(port: int, path: str) -> tuple[int, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT_S) as r:
        return r.status, json.loads(r.read())


def _events(n: int, pad: int = 0) -> bytes:
    now = int(time.time() * 1000)
    events = [
        {
            "action_name": "click",
            "client_id": f"shopper-{i}",
            "timestamp": now - i,
            "event_attributes": {"object": {"object_id": "p01", "object_id_field": "id"}, "note": "x" * pad},
        }
        for i in range(n)
    ]
    return json.dumps({"events": events}).encode()


def _send_chunked(port: int, body: bytes, *extra: str) -> bytes:
    """POST /v1/events with a chunked body (no Content-Length), 2 kB per chunk, stopping as soon
    as the server answers (so it has read all that was sent and closes cleanly)."""
    s = _connect(port)
    with s:
        s.sendall(
            _head(
                "POST", "/v1/events", "Content-Type: application/json", "Transfer-Encoding: chunked", *extra
            )
        )
        for start in range(0, len(body), 2048):
            if select.select([s], [], [], 0.05)[0]:
                break
            chunk = body[start : start + 2048]
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            s.sendall(b"0\r\n\r\n")
        raw, closed = _read_until_closed(s)
    return raw


def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_stored(index_dir, tmp_path):
    s = _settings(index_dir, tmp_path, max_body_bytes=5_000)
    events_file = s.embedded_dir / "ubi_events.jsonl"
    big = _events(60, pad=100)
    assert len(big) > 3 * s.max_body_bytes
    with serving(s) as port:
        raw = _send_chunked(port, big)
        assert _status(raw) == 413
        answer = _json_body(raw)
        assert "5000 bytes" in answer["error"] and answer["detail"] is None
        assert _get(port, "/readyz")[1]["events"] == 0
        assert not events_file.exists() or events_file.stat().st_size == 0
        # the same route takes a chunked body under the limit
        raw = _send_chunked(port, _events(2), "Connection: close")
        assert _status(raw) == 200, raw
        assert _get(port, "/readyz")[1]["events"] == 2


def test_stalled_uploads_hold_no_slot_and_get_408(index_dir, tmp_path):
    s = _settings(index_dir, tmp_path, max_inflight=4, max_queued=0)
    with serving(s) as port:
        stalled = []
        for _ in range(40):
            c = _connect(port)
            c.sendall(_head("POST", "/v1/events", "Content-Type: application/json", "Content-Length: 1000"))
            c.sendall(b"{")  # one byte of the promised 1000, then nothing
            stalled.append(c)
        time.sleep(0.3)  # let the server take them all in
        status, found = _get(port, "/v1/search?q=laptop")
        assert status == 200 and found["results"]
        answers = [_read_until_closed(c) for c in stalled]
        for c in stalled:
            c.close()
    for raw, closed in answers:
        assert _status(raw) == 408 and closed
        assert "did not arrive within 1 s" in _json_body(raw)["error"]


def test_content_length_lies_are_refused(index_dir, tmp_path):
    s = _settings(index_dir, tmp_path, max_body_bytes=5_000)
    with serving(s) as port:
        # a small Content-Length beside a chunked body far over the limit (request smuggling)
        raw = _send_chunked(port, _events(60, pad=100), "Content-Length: 10")
        assert _status(raw) == 400 and "not both" in _json_body(raw)["error"]
        assert _get(port, "/readyz")[1]["events"] == 0
        # declares 4000 bytes, sends 10 and stalls: 408 and the connection closed
        with _connect(port) as c:
            c.sendall(_head("POST", "/v1/events", "Content-Type: application/json", "Content-Length: 4000"))
            c.sendall(b'{"events":')
            raw, closed = _read_until_closed(c)
        assert _status(raw) == 408 and closed
        # declares the size of one event, sends more: only the declared bytes are the body; the
        # rest is a request head that never ends, so the connection is closed after the deadline
        one = _events(1)
        with _connect(port) as c:
            c.sendall(
                _head("POST", "/v1/events", "Content-Type: application/json", f"Content-Length: {len(one)}")
                + one
                + b"x" * 3000
            )
            raw, closed = _read_until_closed(c)
        assert _status(raw) == 200 and b'"accepted":1' in raw and closed
        assert _get(port, "/readyz")[1]["events"] == 1


def test_connections_without_a_complete_request_head_are_closed(index_dir, tmp_path):
    with serving(_settings(index_dir, tmp_path)) as port:
        idle, partial = _connect(port), _connect(port)
        partial.sendall(b"GET /v1/search?q=laptop HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        results = [_read_until_closed(idle), _read_until_closed(partial)]
        idle.close()
        partial.close()
        # a connection that sends its requests in time is served (twice: keep-alive works)
        with _connect(port) as c:
            c.sendall(_head("GET", "/healthz"))
            first = _read_response(c)
            c.sendall(_head("GET", "/healthz", "Connection: close"))
            second, closed = _read_until_closed(c)
    assert results == [(b"", True), (b"", True)]
    assert _status(first) == 200 and _status(second) == 200 and closed


def _guard(app) -> Guard:
    app.middleware_stack = app.middleware_stack or app.build_middleware_stack()
    layer = app.middleware_stack
    while not isinstance(layer, Guard):
        layer = layer.app
    return layer


def test_requests_over_the_slots_wait_in_a_short_queue_and_the_rest_get_429(index_dir, tmp_path):
    s = _settings(index_dir, tmp_path, max_inflight=1, max_queued=1, queue_wait_s=30)
    gate, entered = threading.Event(), threading.Event()

    def slow(settings: Settings) -> Services:
        services = build_services(settings)
        real = services.search

        def blocking(*a, **kw):
            if not entered.is_set():
                entered.set()
                gate.wait(30)
            return real(*a, **kw)

        services.search = blocking  # type: ignore[method-assign]
        return services

    app = create_app(s, build=slow)
    with TestClient(app) as c:
        admission = _guard(app).admission
        got: dict = {}

        def search(name: str) -> None:
            got[name] = c.get("/v1/search", params={"q": "laptop"})

        first = threading.Thread(target=search, args=("first",))
        first.start()
        assert entered.wait(30)
        queued = threading.Thread(target=search, args=("queued",))
        queued.start()
        for _ in range(600):
            if admission.waiting:
                break
            time.sleep(0.05)
        assert admission.waiting == 1
        refused = c.get("/v1/search", params={"q": "laptop"})
        gate.set()
        first.join(30)
        queued.join(30)
        metrics = c.get("/metrics").text
    # the refusal is counted under its endpoint, so operators see which one sheds load
    counted = [ln for ln in metrics.splitlines() if ln.startswith("shoprank_requests_total")]
    assert 'shoprank_requests_total{endpoint="/v1/search",method="GET",status="429"} 1.0' in counted, counted
    # ... and not timed: the latency histogram holds the two requests the service took on
    assert 'shoprank_request_seconds_count{endpoint="/v1/search"} 2.0' in metrics.splitlines()
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "retry" in refused.json()["error"]
    assert got["first"].status_code == 200 and got["queued"].status_code == 200


@pytest.mark.parametrize("held", ["search", "write"])
def test_reads_and_writes_are_admitted_apart(index_dir, tmp_path, held):
    """Searches that fill every slot do not lock out the shop's product writes (price updates
    stream in while the storefront is busy), and writes waiting on the disk hold no search's slot."""
    s = _settings(index_dir, tmp_path, max_inflight=1, max_queued=0, queue_wait_s=1)
    gate, entered = threading.Event(), threading.Event()

    def slow(settings: Settings) -> Services:
        services = build_services(settings)
        name = "search" if held == "search" else "upsert_products"
        real = getattr(services, name)

        def blocking(*a, **kw):
            entered.set()
            gate.wait(30)
            return real(*a, **kw)

        setattr(services, name, blocking)
        return services

    product = {"title": "Admission test cable", "price": 3.0}
    auth = {"X-API-Key": KEY}
    got: dict = {}
    with TestClient(create_app(s, build=slow)) as c:

        def hold() -> None:
            if held == "search":
                got["held"] = c.get("/v1/search", params={"q": "laptop"})
            else:
                got["held"] = c.put("/v1/products/adm-1", json=product, headers=auth)

        t = threading.Thread(target=hold)
        t.start()
        assert entered.wait(30)
        if held == "search":
            other = c.put("/v1/products/adm-1", json=product, headers=auth)
            same = c.post("/v1/search", json={"q": "cable"})  # a POST search is a read
        else:
            other = c.get("/v1/search", params={"q": "cable"})
            same = c.delete("/v1/products/adm-1", headers=auth)
        gate.set()
        t.join(30)
    assert other.status_code == 200, other.text
    assert same.status_code == 429  # its own kind is still bounded
    assert got["held"].status_code == 200
