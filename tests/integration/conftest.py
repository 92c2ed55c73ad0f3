"""The real OpenSearch node the integration tests share (skipped when none answers), and the
3-node loopback cluster the cluster test starts itself (``scripts/opensearch cluster``)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from indexer.opensearch.client import make_client
from tests.conftest import ROOT, opensearch_url

SCRIPT = ROOT / "scripts" / "opensearch"


def _listening(url: str) -> bool:
    """Something accepts connections at the URL's host and port."""
    parts = urlsplit(url.split(",")[0])
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 9200), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def opensearch_client():
    """The node at ``SHOPRANK_OPENSEARCH_URL``. Skipped only when nothing listens there (under CI
    even that fails: ``scripts/test`` starts the node); a node that answers wrongly fails."""
    if not _listening(opensearch_url()):
        pytest.skip(f"nothing listens at {opensearch_url()}; start a node with `scripts/opensearch start`")
    client = make_client(opensearch_url(), timeout=30.0)
    assert client.ping(), f"something listens at {opensearch_url()} but does not answer as OpenSearch"
    return client


@dataclass(frozen=True)
class Cluster:
    """A running loopback cluster: its nodes' URLs, and the script that starts and kills them."""

    urls: tuple[str, ...]

    @property
    def url(self) -> str:
        """Every node, comma-separated (what ``--opensearch-url`` takes)."""
        return ",".join(self.urls)

    def run(self, *args: str, timeout: float = 300) -> str:
        """``scripts/opensearch cluster <args>``; its output (the test fails if it fails)."""
        out = subprocess.run(
            [str(SCRIPT), "cluster", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        assert out.returncode == 0, f"scripts/opensearch cluster {' '.join(args)}:\n{out.stdout}{out.stderr}"
        return out.stdout + out.stderr


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":  # under CI the cluster test never skips
        pytest.fail(f"the OpenSearch cluster could not start under CI: {why}")
    pytest.skip(f"the OpenSearch cluster could not start: {why}")


@pytest.fixture(scope="module")
def opensearch_cluster() -> Iterator[Cluster]:
    """Starts the 3-node cluster unless it already runs green (then it is used and left running),
    and stops it afterwards when this fixture started it."""
    wait = subprocess.run(
        [str(SCRIPT), "cluster", "wait"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SHOPRANK_OS_WAIT": "3"},
    )
    started = wait.returncode != 0
    if started:
        try:
            out = subprocess.run(
                [str(SCRIPT), "cluster", "start"], capture_output=True, text=True, timeout=420, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            subprocess.run([str(SCRIPT), "cluster", "stop"], capture_output=True, timeout=180, check=False)
            _unavailable(repr(exc))
        if out.returncode != 0:
            _unavailable((out.stdout + out.stderr)[-3000:])
    urls = subprocess.run(
        [str(SCRIPT), "cluster", "url"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    try:
        yield Cluster(tuple(urls.split(",")))
    finally:
        if started:
            subprocess.run([str(SCRIPT), "cluster", "stop"], capture_output=True, timeout=180, check=False)
