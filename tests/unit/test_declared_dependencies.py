"""Every third-party package our code imports is declared in pyproject.toml (core or an extra)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from tests.conftest import ROOT

PACKAGES = ("indexer", "ranker", "plugin_api", "training")


def _imported_modules() -> dict[str, str]:
    """Top-level module → first file importing it, over our packages (stdlib and ours left out)."""
    ours = set(PACKAGES)
    found: dict[str, str] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in ours and top not in sys.stdlib_module_names and top != "__future__":
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    names = set()
    for r in reqs:
        m = re.match(r"[A-Za-z0-9_.\-]+", r)
        assert m, r
        names.add(re.sub(r"[-_.]+", "-", m.group(0)).lower())
    return names


def test_every_imported_package_is_declared() -> None:
    dists = packages_distributions()
    declared = _declared()
    missing = {}
    for module, where in _imported_modules().items():
        owners = {re.sub(r"[-_.]+", "-", d).lower() for d in dists.get(module, [])}
        assert owners, f"{module} (imported in {where}) is not installed: declare and install it"
        if not owners & declared:
            missing[module] = (sorted(owners), where)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
