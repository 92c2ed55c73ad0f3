"""The bi-encoder's ONNX export: same vectors as sentence-transformers (fp32), close ones (int8),
manifest and file-hash checks, and its own embedding-cache key."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indexer.embedding.embedders import MINILM_ID, cache_id, make_embedder
from indexer.errors import BadInputError, IndexMismatchError

pytestmark = pytest.mark.model
TEXTS = ["usb c cable 2m", "Lenovo ThinkPad T14 notebook 14 inch", "café crème espresso", "", "x " * 400]


@pytest.fixture(scope="module")
def export(tmp_path_factory, minilm):
    pytest.importorskip("onnxruntime")
    from training.export_embedder import export_bi_encoder

    return export_bi_encoder(tmp_path_factory.mktemp("onnx") / "minilm")


def test_fp32_reproduces_and_int8_approximates_sentence_transformers(export, minilm):
    from indexer.embedding.onnx_embedder import OnnxEmbedder

    reference = minilm.encode(TEXTS)
    fp32 = OnnxEmbedder(export.folder, precision="fp32")
    int8 = OnnxEmbedder(export.folder, precision="int8")
    got = fp32.encode(TEXTS, batch_size=2)  # several batches, sorted by length inside
    assert got.shape == (len(TEXTS), 384) and np.max(np.abs(got - reference)) < 1e-4
    cos = np.sum(int8.encode(TEXTS) * reference, axis=1)
    assert np.all(cos > 0.95)
    assert fp32.model_id == int8.model_id == MINILM_ID == minilm.model_id  # same vector space
    assert len({cache_id(minilm), cache_id(fp32), cache_id(int8)}) == 3  # never share cached vectors
    assert fp32.encode([]).shape == (0, 384)


def test_export_manifest_and_files_are_checked(export, tmp_path):
    import shutil

    from indexer.embedding.onnx_embedder import OnnxEmbedder

    copy = tmp_path / "copy"
    shutil.copytree(export.folder, copy)
    (copy / "model.int8.onnx").write_bytes(b"not the exported model")
    with pytest.raises(IndexMismatchError, match="does not match its export manifest"):
        OnnxEmbedder(copy, precision="int8")
    meta = json.loads((copy / "export.json").read_text())
    (copy / "export.json").write_text(json.dumps({**meta, "kind": "onnx-export"}))
    with pytest.raises(IndexMismatchError, match="not a bi-encoder export"):
        OnnxEmbedder(copy)
    with pytest.raises(IndexMismatchError, match="no ONNX bi-encoder export"):
        OnnxEmbedder(tmp_path / "nothing")
    with pytest.raises(IndexMismatchError, match="unknown ONNX precision"):
        OnnxEmbedder(export.folder, precision="fp16")


def test_registry_needs_the_export_folder():
    with pytest.raises(BadInputError, match="shoprank export --embedder"):
        make_embedder("minilm-onnx-int8")
    with pytest.raises(BadInputError, match="minilm-onnx-int8"):
        make_embedder("bert-large")


def test_auto_queries_go_to_the_onnx_runtime_of_the_same_model_exported_once(tmp_path, minilm, caplog):
    """`query_embedder = "auto"`: `shoprank serve`/`index` export the packaged model when missing
    (once), and queries are embedded on onnxruntime fp32 with the torch model's vectors."""
    pytest.importorskip("onnxruntime")
    from indexer.embedding.onnx_embedder import EXPORT_FILE, OnnxEmbedder
    from plugin_api.backends import query_embedder_from
    from plugin_api.cli.train_cli import ensure_query_runtime
    from plugin_api.settings import Settings

    s = Settings(cache_dir=tmp_path / "cache", embedder="minilm")
    with caplog.at_level("INFO", logger="plugin_api.backends"):
        assert query_embedder_from(s, minilm) is minilm  # no export yet: torch, and it says so
    assert "no ONNX export" in caplog.text
    ensure_query_runtime(s)
    manifest = s.onnx_embedder_dir / EXPORT_FILE
    made = manifest.stat().st_mtime_ns
    ensure_query_runtime(s)  # there already: not exported again
    assert manifest.stat().st_mtime_ns == made
    queries = query_embedder_from(s, minilm)
    assert isinstance(queries, OnnxEmbedder) and queries.precision == "fp32"
    assert queries.model_id == minilm.model_id
    assert np.max(np.abs(queries.encode(TEXTS) - minilm.encode(TEXTS))) < 1e-4
    same = s.model_copy(update={"query_embedder": "same"})
    assert query_embedder_from(same, minilm) is minilm
    int8 = query_embedder_from(s.model_copy(update={"query_embedder": "minilm-onnx-int8"}), minilm)
    assert isinstance(int8, OnnxEmbedder) and int8.precision == "int8"
