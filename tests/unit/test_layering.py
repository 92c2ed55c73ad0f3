"""The folder tree is the architecture, and imports keep to it.

Packages: indexer ← ranker ← (training, plugin_api); nothing imports upward. Inside them, each
subpackage (``ranker/retrieval``, ``indexer/opensearch``, ``plugin_api/http`` …) may import only
the units listed in ``ALLOWED``: a unit is a subpackage, or a package's top-level modules (the
shared model and protocols, e.g. ``indexer`` = ``indexer/product.py``, ``indexer/events.py``…).
The two engines never import each other, and the core packages never read the environment
(settings live at the edge).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("indexer", "ranker", "plugin_api", "training")
INDEXER = {"indexer", "indexer.embedding", "indexer.embedded", "indexer.opensearch"}
RANKER_CORE = {"ranker"} | INDEXER
ALLOWED: dict[str, set[str]] = {
    # the product model, catalog readers, analysis, manifests, event/review models and protocols
    "indexer": {"indexer.embedding"},
    "indexer.embedding": {"indexer"},
    "indexer.embedded": {"indexer", "indexer.embedding"},
    "indexer.opensearch": {"indexer", "indexer.embedding"},
    "ranker": {"indexer", "indexer.embedding"},
    "ranker.retrieval": RANKER_CORE,
    "ranker.rerank": RANKER_CORE | {"ranker.retrieval"},
    "ranker.signals": RANKER_CORE,
    "ranker.query": RANKER_CORE,
    "ranker.ranking": RANKER_CORE | {"ranker.retrieval", "ranker.rerank", "ranker.signals", "ranker.query"},
    "ranker.recommend": RANKER_CORE | {"ranker.retrieval", "ranker.ranking", "ranker.signals"},
    "ranker.evaluation": RANKER_CORE | {"ranker.retrieval", "ranker.signals"},
    "training": RANKER_CORE
    | {"ranker.retrieval", "ranker.rerank", "ranker.ranking", "ranker.signals", "ranker.evaluation"},
    # settings and the backend registry: the edge both front ends build from
    "plugin_api": RANKER_CORE
    | {"ranker.retrieval", "ranker.rerank", "ranker.ranking", "ranker.signals", "ranker.query"},
    "plugin_api.http": RANKER_CORE
    | {
        "plugin_api",
        "ranker.retrieval",
        "ranker.rerank",
        "ranker.ranking",
        "ranker.signals",
        "ranker.recommend",
        "ranker.query",
    },
    "plugin_api.cli": RANKER_CORE
    | {
        "plugin_api",
        "plugin_api.http",
        "ranker.retrieval",
        "ranker.rerank",
        "ranker.ranking",
        "ranker.signals",
        "ranker.recommend",
        "ranker.evaluation",
        "ranker.query",
        "training",
    },
}
# per engine: the search backend of one engine reads only that engine's storage
ENGINE_FILES = {
    "ranker/retrieval/embedded.py": "indexer.opensearch",
    "ranker/retrieval/opensearch.py": "indexer.embedded",
}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if len(parts) >= 2 and (ROOT / parts[0] / parts[1]).is_dir():
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def _file_unit(path: Path) -> str:
    unit = _unit(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert unit is not None
    return unit


def _imported_units(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    units: set[str] = set()
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from indexer import embedding`` imports the subpackage, not the package's modules
            modules = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for m in modules:
            u = _unit(m)
            if u is not None:
                units.add(u)
    return units


def _sources() -> list[Path]:
    return sorted(f for p in PACKAGES for f in (ROOT / p).rglob("*.py"))


def test_every_unit_has_a_rule():
    assert {_file_unit(f) for f in _sources()} == set(ALLOWED)


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_imports_keep_to_the_layout(unit):
    bad = {}
    for f in _sources():
        if _file_unit(f) != unit:
            continue
        extra = _imported_units(f) - ALLOWED[unit] - {unit}
        if extra:
            bad[str(f.relative_to(ROOT))] = sorted(extra)
    assert bad == {}


def test_the_layering_check_sees_a_violation(tmp_path):
    """The rule is not vacuous: an upward import from ranker/retrieval would be reported."""
    probe = tmp_path / "probe.py"
    probe.write_text("from ranker.ranking.full import FullPipeline\nimport plugin_api.settings\n")
    assert _imported_units(probe) - ALLOWED["ranker.retrieval"] == {"ranker.ranking", "plugin_api"}


@pytest.mark.parametrize("path,forbidden", sorted(ENGINE_FILES.items()))
def test_an_engine_never_reads_the_other_engine(path, forbidden):
    assert forbidden not in _imported_units(ROOT / path)


def test_only_the_train_commands_reach_into_training():
    """plugin_api serves and indexes with ranker + indexer; only the train/export CLI needs training."""
    users = sorted(
        str(f.relative_to(ROOT))
        for f in (ROOT / "plugin_api").rglob("*.py")
        if "training" in _imported_units(f)
    )
    assert users == ["plugin_api/cli/train_cli.py"]


@pytest.mark.parametrize("package", ["indexer", "ranker", "training"])
def test_core_never_reads_environment(package):
    offenders = [
        str(f.relative_to(ROOT))
        for f in (ROOT / package).rglob("*.py")
        if "os.environ" in f.read_text() or "getenv" in f.read_text()
    ]
    assert offenders == []


def test_only_the_cli_modules_print():
    """Libraries log; the terminal belongs to the ``plugin_api/cli/*_cli.py`` command modules."""
    offenders = []
    for f in _sources():
        if f.name.endswith("_cli.py"):
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
