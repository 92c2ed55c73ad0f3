"""Benches run as modules (``python -m bench.x``) and take their defaults from the settings."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def test_benches_neither_patch_sys_path_nor_hard_code_the_data_folder() -> None:
    offenders = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "sys.path.insert" in text or re.search(r'"\.local"\s*/\s*"share"', text):
            offenders.append(path.name)
    assert offenders == []
