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


ADOPTED = (
    "completion",
    "crash_durability",
    "embedder_onnx",
    "event_attack",
    "foundation",
    "fusion_variants",
    "hostile_inputs",
    "judgment_pool",
    "overload",
    "peer_hybrid",
    "recommend",
    "reranker_sources",
    "reranking",
    "sentiment",
    "sentiment_baseline",
    "serve_load",
    "speller",
    "tune_fusion",
    "tune_lexical",
    "typed_queries",
    "typing_load",
)


def test_bench_scripts_stamp_their_runs_through_bench_common() -> None:
    offenders = []
    for name in ADOPTED:
        text = (ROOT / "bench" / f"{name}.py").read_text(encoding="utf-8")
        if (
            "Run.start(" not in text
            or 'REPO.parent / "shared' in text
            or '"machine": machine_description()' in text
        ):
            offenders.append(name)
    assert offenders == []
