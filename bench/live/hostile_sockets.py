"""``bench.hostile_inputs`` cases 4 and 5, over raw sockets: a chunked flood without a key, and
uploads that stall after one byte while searches run."""

from __future__ import annotations

import json
import select
import socket
import time

from bench.live.hostile_client import Bench, file_size, ubi_event


def _head(port: int, path: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def _read_status(sock: socket.socket, deadline: float) -> tuple[int | str, bytes]:
    """The status of the answer on ``sock`` (or ``closed``/``reset``/``no answer``) and its bytes."""
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
        if not r:
            continue
        try:
            got = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return ("reset" if not buf else _status_of(buf)), buf
        if not got:
            return ("closed" if not buf else _status_of(buf)), buf
        buf += got
        if b"\r\n\r\n" in buf:
            return _status_of(buf), buf
    return "no answer", buf


def _status_of(buf: bytes) -> int | str:
    parts = buf.split(b"\r\n", 1)[0].split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else f"garbled: {buf[:40]!r}"


def chunked_flood(b: Bench, mb: int) -> None:
    """Case 4: ``mb`` MB of chunked events without a key; stop sending once the server answers."""
    port, before = b.srv.port, file_size(b.events_file)
    ready0 = b.call("GET", "/readyz")[2] or {}
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    try:
        sent, broke = _send_chunked(sock, port, mb * 1_000_000)
        status, _ = _read_status(sock, time.monotonic() + 15)
    finally:
        sock.close()
    ms = (time.monotonic() - t0) * 1000
    grew = file_size(b.events_file) - before
    ready1 = b.call("GET", "/readyz")[2] or {}
    b.row(
        4,
        f"{mb} MB chunked POST /v1/events, no key, no Content-Length (raw socket)",
        "413",
        status,
        ms,
        f"{sent / 1e6:.1f} MB sent before the answer{' (' + broke + ')' if broke else ''}; events log grew "
        f"{grew} B; events {ready0.get('events')} → {ready1.get('events')}",
        status == 413 and grew == 0 and ready0.get("events") == ready1.get("events"),
    )


def _send_chunked(sock: socket.socket, port: int, total: int) -> tuple[int, str]:
    """Up to ``total`` bytes of events in chunks, stopping once the server answers or the socket
    breaks; the bytes sent and the error that stopped it (or "")."""
    event = json.dumps({**ubi_event("hi-chunk", "p01"), "event_attributes": {"pad": "x" * 15000}}).encode()
    sent, broke = 0, ""
    sock.sendall(_head(port, "/v1/events", "Transfer-Encoding: chunked\r\n"))
    piece = b'{"events": [' + event
    while sent < total:
        if select.select([sock], [], [], 0)[0]:
            break  # the server answered (or closed) before the end
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except OSError as e:
            broke = type(e).__name__
            break
        sent += len(piece)
        piece = b"," + event
    else:
        sock.sendall(b"2\r\n]}\r\n0\r\n\r\n")
    return sent, broke


def slowloris(b: Bench, stalled: int, searches: int, read_timeout: float) -> None:
    """Case 5: ``stalled`` connections send a head and 1 byte of body; ``searches`` GETs meanwhile."""
    port, socks = b.srv.port, []
    t0 = time.monotonic()
    try:
        for _ in range(stalled):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
            s.sendall(_head(port, "/v1/events", "Content-Length: 1000\r\n") + b"{")
        t_open = time.monotonic() - t0
        codes, worst = _searches(b, searches)
        t_search = time.monotonic() - t0
        answers, last = _stalled_answers(socks, t0, t0 + read_timeout + 10)
    finally:
        for s in socks:
            s.close()
    ok200 = codes.get("200", 0)
    b.row(
        5,
        f"{searches} sequential GET /v1/search while {stalled} uploads stall after 1 byte",
        "200 each",
        f"{ok200}/{searches} × 200",
        worst,
        f"statuses {codes}; worst {worst:.0f} ms; searches done {t_search:.1f} s after the stall began "
        f"(stalls opened in {t_open:.1f} s)",
        ok200 == searches,
    )
    timely = sum(n for k, n in answers.items() if k in ("408", "closed", "reset"))
    b.row(
        5,
        f"the {stalled} stalled uploads",
        f"408 or closed within ~{read_timeout:g} s",
        str(answers),
        last * 1000,
        f"last answered {last:.1f} s after the stall began (SHOPRANK_READ_TIMEOUT_S {read_timeout:g})",
        timely == stalled and last <= read_timeout + 3,
    )


def _searches(b: Bench, searches: int) -> tuple[dict[str, int], float]:
    """``searches`` sequential searches: how many got each status, and the slowest (ms)."""
    codes: dict[str, int] = {}
    worst = 0.0
    for i in range(searches):
        status, ms, _ = b.call("GET", "/v1/search", params={"q": f"notebook {i}", "k": 10}, timeout=15)
        codes[str(status)] = codes.get(str(status), 0) + 1
        worst = max(worst, ms)
    return codes, worst


def _stalled_answers(socks: list[socket.socket], t0: float, deadline: float) -> tuple[dict[str, int], float]:
    """How the stalled sockets ended (by status), and when the last answered (s after ``t0``)."""
    answers: dict[str, int] = {}
    last = 0.0
    for s in socks:
        status, _ = _read_status(s, deadline)
        answers[str(status)] = answers.get(str(status), 0) + 1
        if status != "no answer":
            last = max(last, time.monotonic() - t0)
    return answers, last
