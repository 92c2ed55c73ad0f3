"""Dependency direction: indexer ← ranker ← (training, plugin_api); nothing imports upward,
and the core packages never read the environment (settings live at the edge)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "indexer": {"ranker", "training", "plugin_api"},
    "ranker": {"training", "plugin_api"},
    "training": {"plugin_api"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    files = list((ROOT / package).rglob("*.py"))
    assert files
    bad = {str(f.relative_to(ROOT)): sorted(_imports(f) & FORBIDDEN[package]) for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_only_the_train_commands_reach_into_training():
    """plugin_api serves and indexes with ranker + indexer; only the train/export CLI needs training."""
    users = sorted(f.name for f in (ROOT / "plugin_api").rglob("*.py") if "training" in _imports(f))
    assert users == ["train_cli.py"]


@pytest.mark.parametrize("package", ["indexer", "ranker", "training"])
def test_core_never_reads_environment(package):
    offenders = [
        str(f.relative_to(ROOT))
        for f in (ROOT / package).rglob("*.py")
        if "os.environ" in f.read_text() or "getenv" in f.read_text()
    ]
    assert offenders == []
