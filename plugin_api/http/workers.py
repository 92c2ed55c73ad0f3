"""``shoprank serve --workers N``: N worker processes, each with its own listening socket.

uvicorn's own ``--workers`` shares one listening socket, and the process that wakes first takes
the connection: a storefront's keep-alive connections then pile onto one worker (measured: 1,320
of 1,320 searches of ``wrk -c8`` on one of two workers, the other idle). Here every worker binds
``host:port`` with ``SO_REUSEPORT``, so the kernel spreads connections over the workers by their
address hash. The supervisor checks the port is free first (a socket of another service there
would otherwise share its traffic with ours), gives each worker its share of the cores for
numeric libraries (``OMP_NUM_THREADS`` and the like, and ``SHOPRANK_MODEL_THREADS`` for
onnxruntime, unless already set: N workers each spinning threads for every core measured slower
than one worker), restarts a worker that dies, and stops them all on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from typing import Any

log = logging.getLogger(__name__)

APP = "plugin_api.http.app:app_from_env"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "SHOPRANK_MODEL_THREADS")
RESTART_AFTER_S = 2.0  # a worker that died is started again after this long


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and without it
    # every response waited ~40 ms for a delayed ACK (measured: 2 workers at 162 req/s, ~80 % idle)
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    sock = listening_socket(host, port, reuse_port=True)
    config = uvicorn.Config(APP, factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def thread_share(workers: int, cores: int | None = None) -> int:
    """Threads per worker for numeric libraries: the cores divided among the workers (≥ 1)."""
    n = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, n // max(1, workers))


def check_port_free(host: str, port: int) -> None:
    """OSError when something listens on ``host:port`` already (with ``SO_REUSEPORT`` it would
    silently share the port with the workers)."""
    listening_socket(host, port, reuse_port=False).close()


def serve_workers(host: str, port: int, workers: int, options: dict[str, Any]) -> int:
    """Run ``workers`` uvicorn processes on ``host:port`` until SIGTERM/SIGINT; 0 when stopped."""
    share = str(thread_share(workers))
    for var in THREAD_VARS:
        os.environ.setdefault(var, share)  # inherited by the spawned workers
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        p = ctx.Process(target=_worker, args=(host, port, options), name="shoprank-worker")
        p.start()
        return p

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    procs = [start() for _ in range(workers)]
    log.info("serving on %s:%d with %d workers (%s threads each)", host, port, workers, share)
    try:
        while not stopping:
            time.sleep(0.2)
            for i, p in enumerate(procs):
                if p.is_alive() or stopping:
                    continue
                log.warning("worker %s exited with %s; starting another", p.pid, p.exitcode)
                time.sleep(RESTART_AFTER_S)
                if not stopping:
                    procs[i] = start()
    finally:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)  # uvicorn finishes its requests and exits
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join(5)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
