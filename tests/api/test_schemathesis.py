"""Schemathesis against the running service (issue 12: the OpenAPI document matches the service).

``shoprank serve`` (embedded backend, hashing embedder, the fixture catalog, one admin key, and
a tiny sentiment model trained here so that reviews can be scored) runs on a free loopback port.
``st run`` generates cases from its /openapi.json with a fixed seed (examples, coverage and
fuzzing phases; the document has no links, so no stateful phase), sends them with the admin key
(the ``ignored_auth`` check also sends them without one and with a wrong one) and runs every
check. The test asserts that no check failed on any of at least 500 cases.
tests/api/schemathesis_hooks.py steers the few inputs whose rule a JSON Schema cannot state.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT, tiny_sentiment_model

pytestmark = pytest.mark.model  # the reviews it sends are scored by a tiny MiniLM model

SEED = 20261201
MAX_EXAMPLES = 20  # per operation and phase; with the coverage phase ~1,100 cases, ~1 min on 2 cores
MIN_CASES = 500
KEY = "schemathesis-admin-key"
BIN = Path(sys.executable).parent


def _st() -> Path:
    st = BIN / "st"
    if not st.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"schemathesis is not installed in {BIN.parent}; it is in the [dev] extra")
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    return st


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, proc: subprocess.Popen, log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"shoprank serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    pytest.fail(f"shoprank serve was not ready within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def _warm_up(base: str) -> None:
    """Load the sentiment model (the first review pays for it) before any timed request."""
    body = json.dumps({"reviews": [{"product_id": "p01", "text": "works well", "rating": 5}]}).encode()
    req = urllib.request.Request(
        f"{base}/v1/reviews",
        data=body,
        headers={"Content-Type": "application/json", "X-API-Key": KEY},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        assert r.status == 200, r.read()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    _st()
    root = tmp_path_factory.mktemp("schemathesis")
    sentiment = tiny_sentiment_model(root / "sentiment")
    env = {
        **os.environ,
        "SHOPRANK_EMBEDDER": "hashing",
        "SHOPRANK_DEVICE": "cpu",
        "SHOPRANK_DATA_DIR": str(root / "data"),
        "SHOPRANK_CACHE_DIR": str(root / "cache"),
        "SHOPRANK_API_KEYS": json.dumps([KEY]),
        "SHOPRANK_SENTIMENT_PATH": str(sentiment),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    shoprank = [sys.executable, "-m", "plugin_api.cli"]
    catalog = FIXTURES / "catalog.jsonl"
    index = [*shoprank, "index", "--catalog", str(catalog), "--data-dir", str(root / "data"), "--quiet"]
    subprocess.run(index, env=env, cwd=ROOT, check=True, capture_output=True, timeout=120)
    port = _free_port()
    log = root / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*shoprank, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, log)
        _warm_up(base)
        yield base, root, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def test_schemathesis_finds_no_failure_of_any_check(service):
    base, root, log = service
    st = _st()
    work = root / "st"  # schemathesis keeps its caches in the working directory: not the clone
    work.mkdir()
    cmd = [
        str(st), "run", f"{base}/openapi.json",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing",
        "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES),
        "--generation-database", "none",
        "--header", f"X-API-Key: {KEY}",
        "--workers", "1",
        "--request-timeout", "60",
        "--max-response-time", "30",  # the check's default (10 s) is tight for a shared 2-core box
        "--continue-on-failure",
        "--no-color",
        "--report", "json",
        "--report-dir", str(work),
    ]  # fmt: skip
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    run = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=900)
    reports = sorted(work.glob("json-*.json"))
    said = f"{run.stdout[-5000:]}{run.stderr[-3000:]}"
    assert reports, f"schemathesis wrote no report (exit {run.returncode}):\n{said}"
    report = json.loads(reports[-1].read_text())
    failures = [f"{f['code']} {f['title']}: {', '.join(f['operations'])}" for f in report["failures"]]
    shown = f"{run.stdout[-12000:]}\n--- service log ---\n{log.read_text()[-3000:]}"
    assert failures == [] and report["errors"] == [], shown
    assert report["operations"]["tested"] == report["operations"]["total"] == 14, shown
    assert report["test_cases"]["generated"] >= MIN_CASES, shown
    assert report["complete"] and run.returncode == 0, shown
