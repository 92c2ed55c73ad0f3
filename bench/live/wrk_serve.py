"""``shoprank serve`` on a copy of the embedded index, and ``wrk`` runs against it, for the load
benches (``bench/serve_load.py``, ``bench/typing_load.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.common import REPO
from bench.live.overload_load import LUA, MARK, run_wrk

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


_REQUEST = """function request()
  i = i + 1
  return wrk.format("GET", prefix .. qs[(i %% #qs) + 1])
end"""

_WRITE = """local bodies = {%(bodies)s}
local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = "%(key)s"}
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_usec; } shoprank_timeval;
  int gettimeofday(shoprank_timeval *tv, void *tz);
]]
local tv = ffi.new("shoprank_timeval")
local interval_ms = %(interval_ms).3f
local next_at = nil

local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

-- each request takes the next slot of the thread's schedule: a steady rate whatever the latency
function delay()
  local t = now_ms()
  if next_at == nil or next_at < t then next_at = t end
  local wait = next_at - t
  next_at = next_at + interval_ms
  return math.floor(wait)
end

function request()
  i = i + 1
  local j = (i %% #qs) + 1
  return wrk.format("PUT", qs[j], headers, bodies[j])
end"""


def write_puts_lua(path: Path, puts: Sequence[tuple[str, dict[str, Any]]], key: str, rate: float) -> Path:
    """A script that PUTs each (path, JSON body) in turn with ``X-API-Key: key`` at ``rate``
    requests per second (run it with one thread and enough connections to carry the rate)."""
    assert _REQUEST in LUA
    body = _WRITE % {
        "bodies": ", ".join(
            json.dumps(json.dumps(b, ensure_ascii=False), ensure_ascii=False) for _, b in puts
        ),
        "key": key,
        "interval_ms": 1000.0 / rate,
    }
    lua = LUA.replace(_REQUEST, body.replace("%", "%%"))
    quoted = ", ".join(json.dumps(p) for p, _ in puts)
    path.write_text(lua % {"queries": quoted, "prefix": "", "mark": MARK})
    return path


_POST = """local bodies = {%(bodies)s}
local headers = {["Content-Type"] = "application/json"}

function request()
  i = i + 1
  local j = (i %% #qs) + 1
  return wrk.format("POST", qs[j], headers, bodies[j])
end"""


def write_posts_lua(path: Path, posts: Sequence[tuple[str, dict[str, Any]]]) -> Path:
    """A script that POSTs each (path, JSON body) in turn, as fast as the connections allow."""
    assert _REQUEST in LUA
    body = _POST % {
        "bodies": ", ".join(
            json.dumps(json.dumps(b, ensure_ascii=False), ensure_ascii=False) for _, b in posts
        )
    }
    lua = LUA.replace(_REQUEST, body.replace("%", "%%"))
    quoted = ", ".join(json.dumps(p) for p, _ in posts)
    path.write_text(lua % {"queries": quoted, "prefix": "", "mark": MARK})
    return path


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
