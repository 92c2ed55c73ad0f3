"""``shoprank serve`` on a copy of the embedded index, and ``wrk`` runs against it, for the load
benches (``bench/serve_load.py``, ``bench/typing_load.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.common import REPO
from bench.live.overload_load import run_wrk

WRK_FIELDS = (
    "wrk",
    "requests",
    "rps",
    "statuses",
    "timeouts",
    "socket_errors",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
)


def wrk_row(base: str, lua: Path, connections: int, seconds: float) -> dict[str, Any]:
    """``wrk -t2`` with ``connections`` for ``seconds``: its figures and the non-2xx count."""
    w = run_wrk(base, lua, connections, seconds, threads=2, timeout="10s")
    return {
        **{k: w[k] for k in WRK_FIELDS},
        "non_200": sum(v for k, v in w["statuses"].items() if k != "2xx"),
    }


def serve(
    port: int,
    log: Path,
    data: Path,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``shoprank serve`` over the data folder ``data`` (a copy of the index: the searches' UBI
    query records stay there), with ``env`` on top of this process's, once ``/readyz`` answers 200."""
    cmd = [sys.executable, "-m", "plugin_api.cli", "serve", "--port", str(port), *extra]
    env = {**os.environ, "SHOPRANK_DATA_DIR": str(data), **(env or {})}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"shoprank serve exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"shoprank serve not ready after 300 s; see {log}")
