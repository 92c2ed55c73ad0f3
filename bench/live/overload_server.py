"""``bench.overload``'s server: the prepared data (an embedded index of Chorus plus the synthetic UBI
log) and ``shoprank serve`` over it in a subprocess, with the admission settings of a variant."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import REPO
from bench.live.server import free_port


def dev_queries(catalog: Path) -> list[str]:
    with open(catalog / "judgments_dev.csv", newline="") as fh:
        return sorted({row["query"] for row in csv.DictReader(fh)})


def _cli(*argv: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "plugin_api.cli.main", *argv], cwd=REPO, env=env, check=True)


def prepare_data(data: Path, catalog: Path, events: bool, env: dict[str, str]) -> float:
    """Index the catalog (and ingest the synthetic UBI log) into ``data`` unless it is there."""
    t0 = time.perf_counter()
    if not (data / "index" / "CURRENT").exists():
        common = ["--data-dir", str(data), "--embedder", "hashing", "--device", "cpu"]
        _cli("index", "--catalog", str(catalog), "--quiet", *common, env=env)
        if events:
            log = str(catalog / "ubi_events_synthetic.zip")
            _cli("events", "ingest", log, "--shift-to-now", *common, env=env)
    return round(time.perf_counter() - t0, 1)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Server:
    """``shoprank serve`` in a subprocess; :meth:`stop` (always call it) ends it."""

    def __init__(self, data: Path, admission: dict[str, Any], env: dict[str, str], log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        server_env = {**env, **{f"SHOPRANK_{k.upper()}": str(v) for k, v in admission.items()}}
        cmd = [sys.executable, "-m", "plugin_api.cli.main", "serve", "--port", str(self.port)]
        cmd += ["--data-dir", str(data), "--embedder", "hashing", "--device", "cpu"]
        self._fh = open(log, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=server_env, stdout=self._fh, stderr=subprocess.STDOUT)

    def wait_ready(self, limit_s: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-2000:]
                raise SystemExit(f"shoprank serve exited with {self.proc.returncode}:\n{tail}")
            try:
                status, body = http_get(f"{self.base}/readyz", timeout=2)
                if status == 200:
                    return dict(json.loads(body))
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"shoprank serve was not ready within {limit_s:g} s (log: {self.log})")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text = http_get(f"{self.base}/metrics", timeout=10)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for line in text.splitlines():
            m = re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line)
            if m:
                labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2))))
                out[(m.group(1), labels)] = float(m.group(3))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._fh.close()
