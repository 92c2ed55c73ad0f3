"""A built service has paid its start-up costs: the first shopper requests import nothing heavy.

Found by CI: the first ``/v1/recommend/similar`` after start imported torch (MMR) inside the
request, ~2 s on an idle 2-core machine and past a client's 5 s timeout under load, after
``/readyz`` had already said ready.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import build_fixture_index

PROBE = r"""
import json, sys
from plugin_api.settings import Settings
from fastapi.testclient import TestClient
from plugin_api.http.app import create_app

settings = Settings(data_dir=sys.argv[1], embedder="hashing", cache_dir=sys.argv[2])
app = create_app(settings)
with TestClient(app) as client:
    assert client.get("/readyz").status_code == 200
    before = set(sys.modules)
    calls = [
        ("/v1/search", {"q": "ThinkPad notebook", "k": 3, "explain": "true"}),
        ("/v1/recommend/similar/p01", {"k": 4}),
        ("/v1/recommend/user/newcomer", {"k": 4}),
    ]
    status = [client.get(path, params=params).status_code for path, params in calls]
    new = sorted(set(sys.modules) - before)
print(json.dumps({"status": status, "new": new}))
"""

HEAVY = ("torch", "transformers", "sentence_transformers", "onnxruntime", "sklearn", "scipy")


def test_first_requests_after_ready_import_nothing_heavy(tmp_path):
    root = build_fixture_index(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(root / "data"), str(root / "cache")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["status"] == [200, 200, 200]
    heavy = [m for m in report["new"] if m.split(".")[0] in HEAVY]
    assert not heavy, f"imported inside the first requests: {heavy[:10]}"
