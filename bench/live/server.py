"""``shoprank`` as real processes on loopback, for the benches that kill and restart it.

:class:`Shoprank` runs subcommands with the bench's own environment (the hashing embedder, an API
key, no inherited ``SHOPRANK_*``); :class:`Server` is one ``shoprank serve`` at a time on a fixed
free port. Used by ``bench.crash_durability`` and ``bench.hostile_inputs``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.common import REPO

FIXTURE = REPO / "tests" / "fixtures" / "catalog.jsonl"
NODE = "http://127.0.0.1:9200"
KEY = "bench-crash-key"
HASHING = ("--embedder", "hashing")
EXC = re.compile(r"^[A-Za-z_.]*(Error|Exception|Exit): ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sigkill(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.wait(30)


class Shoprank:
    """Runs ``shoprank`` subcommands with the bench's environment (no inherited SHOPRANK_*)."""

    def __init__(
        self, work: Path, data: Path, backend: Any = "embedded", alias: str = "", sentiment: Any = None
    ):
        self.work, self.data, self.backend, self.alias = work, data, backend, alias
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPRANK_")}
        self.env.update(
            SHOPRANK_API_KEYS=json.dumps([KEY]),
            SHOPRANK_EMBEDDER="hashing",
            SHOPRANK_CACHE_DIR=str(work / "cache"),
            SHOPRANK_BACKEND=backend,
            HF_HUB_OFFLINE="1",
        )
        if alias:
            self.env.update(SHOPRANK_INDEX_ALIAS=alias, SHOPRANK_UBI_PREFIX=alias)
        if sentiment:
            self.env["SHOPRANK_SENTIMENT_PATH"] = str(sentiment)
        data.mkdir(parents=True, exist_ok=True)

    def popen(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "plugin_api.cli.main", *args, "--data-dir", str(self.data), *HASHING]
        with open(log, "ab") as fh:
            return subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)

    def index(self, catalog: Path, log: Path, timeout: float = 600) -> dict[str, Any]:
        """Run ``shoprank index`` to the end; its JSON summary."""
        p = self.popen(["index", "--catalog", str(catalog), "--quiet"], log)
        try:
            rc = p.wait(timeout)
        finally:
            sigkill(p)
        last = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("{")]
        if rc != 0 or not last:
            raise RuntimeError(f"shoprank index failed (rc {rc}); see {log}")
        return dict(json.loads(last[-1]))

    def settings(self) -> Any:
        from plugin_api.settings import Settings

        s = Settings(
            backend=self.backend, data_dir=self.data, cache_dir=self.work / "cache", embedder="hashing"
        )
        return s.model_copy(update={"index_alias": self.alias, "ubi_prefix": self.alias}) if self.alias else s


class Server:
    """One ``shoprank serve`` process at a time on a fixed port; ``start`` again after ``kill``."""

    def __init__(self, sr: Shoprank, name: str):
        self.sr, self.name, self.port = sr, name, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = sr.work / f"serve-{name}.log"

    def start(self, timeout: float = 180) -> float:
        """Seconds from the process start to the first 200 from /readyz."""
        self.starts += 1
        self.log = self.sr.work / f"serve-{self.name}-{self.starts}.log"
        t0 = time.monotonic()
        self.proc = self.sr.popen(["serve", "--port", str(self.port)], self.log)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited ({self.proc.returncode}); see {self.log}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server {self.name} not ready after {timeout:.0f} s; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None:
            sigkill(self.proc)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.base + path, params=params, timeout=30)

    def products(self) -> Any:
        return self.get("/readyz").json().get("products")

    def serves(self, pid: str) -> bool:
        return self.get(f"/v1/recommend/similar/{pid}", k=1).status_code == 200

    def log_notes(self) -> dict[str, int]:
        """Lines of this start's log worth a look: torn or unreadable records, tracebacks."""
        text = self.log.read_text(errors="replace").lower()
        return {k: n for k in ("torn", "unreadable", "quarantine", "traceback") if (n := text.count(k))}


def server_exceptions(work: Path, pattern: str) -> dict[str, int]:
    """The exceptions the servers logged (a traceback's last line) over every start, killed ones too,
    with the temporary folder shown as WORK and long numbers as N."""
    found: Counter[str] = Counter()
    for log in sorted(work.glob(pattern)):
        lines = log.read_text(errors="replace").replace(str(work), "WORK").splitlines()
        found.update(re.sub(r"\d{3,}", "N", ln)[:160] for ln in lines if EXC.match(ln))
    return dict(found)


def drop_opensearch(sr: Shoprank) -> None:
    from plugin_api.backends import factory

    store: Any = factory("opensearch").store(sr.settings())
    try:
        store.drop()
    finally:
        for name in (f"{sr.alias}_events", f"{sr.alias}_queries", f"{sr.alias}-reviews"):
            httpx.delete(f"{NODE}/{name}", params={"ignore_unavailable": "true"}, timeout=30)


def node_answers() -> bool:
    try:
        return httpx.get(NODE, timeout=3).status_code == 200
    except httpx.TransportError:
        return False
