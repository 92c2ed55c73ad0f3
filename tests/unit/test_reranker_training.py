"""A tiny real fine-tuning run of the cross-encoder (CPU, a few dozen steps on the fixture)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import numpy as np
import pytest

from indexer.errors import BadInputError, IndexMismatchError
from ranker.rerank.cross_encoder import CrossEncoderReranker, passage

pytestmark = pytest.mark.model


@dataclass(frozen=True)
class Pair:
    query: str
    text: str
    label: float


def _pairs(products, seed=0):
    rng = random.Random(seed)
    out = []
    for p in products:
        q = p.category.lower()
        out.append(Pair(q, passage(p), 1.0))
        other = rng.choice([o for o in products if o.category != p.category])
        out.append(Pair(q, passage(other), 0.0))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fixture_products, minilm):
    from training.reranker import TrainConfig, train_reranker

    out = tmp_path_factory.mktemp("reranker")
    steps: list[float] = []
    cfg = TrainConfig(
        epochs=8, batch_size=8, lr=1e-4, max_length=48, device="cpu", max_steps=48, checkpoint_every=0
    )
    rep = train_reranker(
        _pairs(fixture_products),
        out,
        cfg,
        data_sources={"fixture": 60},
        on_step=lambda s, loss: steps.append(loss),
    )
    return out, rep, steps


def test_loss_falls_and_artifact_reloads(trained, fixture_products):
    out, rep, steps = trained
    assert rep.steps == 48 and len(steps) == 48 and rep.device == "cpu"
    assert np.mean(steps[-8:]) < 0.7 * np.mean(steps[:8])
    reranker = CrossEncoderReranker(out, device="cpu")
    m = reranker.manifest
    assert m.kind == "cross-encoder" and m.data_sources == {"fixture": 60} and m.max_length == 48
    assert m.train_config["steps"] == 48 and len(m.data_hash) == 64
    by_id = {p.id: p for p in fixture_products}
    scores = reranker.score("printer", [by_id["p16"], by_id["p17"], by_id["p27"], by_id["p05"]])
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))
    assert min(scores[:2]) > max(scores[2:])  # the printers above the espresso machine and the TV


def test_training_is_deterministic_and_resumes(tmp_path, fixture_products, trained):
    from training.reranker import TrainConfig, train_reranker

    cfg = TrainConfig(
        epochs=8, batch_size=8, lr=1e-4, max_length=48, device="cpu", max_steps=12, checkpoint_every=0
    )
    a, b = [], []
    train_reranker(_pairs(fixture_products), tmp_path / "a", cfg, on_step=lambda s, loss: a.append(loss))
    train_reranker(_pairs(fixture_products), tmp_path / "b", cfg, on_step=lambda s, loss: b.append(loss))
    np.testing.assert_allclose(a, b, rtol=1e-4)
    # Interrupt after 6 steps (checkpoint every 3), then resume to the end with the same data.
    cfg_ck = TrainConfig(
        epochs=8, batch_size=8, lr=1e-4, max_length=48, device="cpu", max_steps=12, checkpoint_every=3
    )

    class Stop(Exception):
        pass

    def stop_at_7(step, loss):
        if step == 7:
            raise Stop

    with pytest.raises(Stop):
        train_reranker(_pairs(fixture_products), tmp_path / "c", cfg_ck, on_step=stop_at_7)
    rep = train_reranker(_pairs(fixture_products), tmp_path / "c", cfg_ck)
    assert rep.resumed_from == 6 and rep.steps == 12
    assert not (tmp_path / "c" / "checkpoint").exists()


def test_mismatched_manifest_is_refused(trained, tmp_path):
    out, _, _ = trained
    data = json.loads((out / "manifest.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({**data, "kind": "sentiment"}))
    with pytest.raises(IndexMismatchError, match="not a 'cross-encoder' model"):
        CrossEncoderReranker(bad)
    (bad / "manifest.json").write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(IndexMismatchError, match="schema version 99"):
        CrossEncoderReranker(bad)
    with pytest.raises(IndexMismatchError, match="train one with `shoprank train`"):
        CrossEncoderReranker(tmp_path / "nothing")


@pytest.fixture(scope="module")
def exported(trained):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from training.export import export_cross_encoder

    out, _, _ = trained
    return out, export_cross_encoder(out)


def test_onnx_export_reproduces_torch_and_int8_keeps_the_order(exported, fixture_products):
    from ranker.rerank.registry import open_reranker

    out, rep = exported
    assert set(rep.files) == {"fp32", "int8"} and rep.max_abs_diff["fp32"] < 1e-3
    assert rep.files["int8"]["bytes"] < 0.5 * rep.files["fp32"]["bytes"]
    export = json.loads((out / "onnx" / "export.json").read_text())
    assert export["source"] == CrossEncoderReranker(out).manifest.name and export["opset"] == 17
    by_id = {p.id: p for p in fixture_products}
    prods = [by_id[i] for i in ("p16", "p17", "p27", "p05")]
    torch_scores = open_reranker(out, runtime="torch", device="cpu").score("printer", prods)
    fp32 = open_reranker(out, runtime="onnx", device="cpu").score("printer", prods)
    int8 = open_reranker(out, runtime="onnx-int8", device="cpu").score("printer", prods)
    np.testing.assert_allclose(fp32, torch_scores, atol=1e-4)
    assert np.max(np.abs(int8 - torch_scores)) < 0.1
    assert min(int8[:2]) > max(int8[2:])  # quantized, the printers still lead


def test_onnx_tokenizer_matches_the_torch_tokenizer(exported, fixture_products):
    from transformers import AutoTokenizer

    from ranker.rerank.registry import open_reranker

    out, _ = exported
    onnx = open_reranker(out, runtime="onnx", device="cpu")
    pairs = [("usb cable", passage(p)) for p in fixture_products[:6]]
    ours = onnx.encode(pairs)
    hf = AutoTokenizer.from_pretrained(str(out / "model"), local_files_only=True)(
        [q for q, _ in pairs], [t for _, t in pairs], padding=True, truncation="longest_first", max_length=48
    )
    assert ours["input_ids"].tolist() == hf["input_ids"]
    assert ours["token_type_ids"].tolist() == hf["token_type_ids"]
    assert ours["attention_mask"].tolist() == hf["attention_mask"]


def test_onnx_export_is_checked_at_load(exported, tmp_path):
    import shutil

    from ranker.rerank.registry import open_reranker

    out, _ = exported
    with pytest.raises(BadInputError, match="choose from torch, onnx, onnx-int8"):
        open_reranker(out, runtime="tensorrt")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    export = json.loads((copy / "onnx" / "export.json").read_text())
    (copy / "onnx" / "export.json").write_text(json.dumps({**export, "source": "another-model"}))
    with pytest.raises(IndexMismatchError, match="export again"):
        open_reranker(copy, runtime="onnx-int8")
    (copy / "onnx" / "export.json").write_text(json.dumps(export))
    with open(copy / "onnx" / "model.int8.onnx", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(IndexMismatchError, match="differs from its export manifest"):
        open_reranker(copy, runtime="onnx-int8").load()
    shutil.rmtree(copy / "onnx")
    with pytest.raises(IndexMismatchError, match="shoprank export --reranker"):
        open_reranker(copy, runtime="onnx")


def test_a_shallower_cross_encoder_keeps_its_bottom_layers_and_exports(tmp_path, fixture_products, minilm):
    from safetensors.torch import load_file

    from ranker.rerank.registry import open_reranker
    from training.export import export_cross_encoder
    from training.finetune import load_base_model
    from training.reranker import TrainConfig, train_reranker

    cfg = TrainConfig(
        epochs=8,
        batch_size=8,
        lr=1e-4,
        max_length=48,
        device="cpu",
        max_steps=40,
        checkpoint_every=0,
        layers=2,
    )
    out = tmp_path / "two"
    train_reranker(_pairs(fixture_products), out, cfg, data_sources={"fixture": 60})
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    weights = load_file(str(out / "model" / "model.safetensors"))
    assert not any(".layer.2." in k for k in weights) and any(".layer.1." in k for k in weights)
    reranker = CrossEncoderReranker(out, device="cpu")
    assert reranker.manifest.train_config["layers"] == 2
    by_id = {p.id: p for p in fixture_products}
    prods = [by_id[i] for i in ("p16", "p17", "p27", "p05")]
    scores = reranker.score("printer", prods)
    assert min(scores[:2]) > max(scores[2:])
    export_cross_encoder(out)
    fp32 = open_reranker(out, runtime="onnx", device="cpu").score("printer", prods)
    np.testing.assert_allclose(fp32, scores, atol=1e-4)
    # the untouched base model still has its 6 layers; a cut beyond them is refused
    assert load_base_model(48, "cpu")[0].auto_model.config.num_hidden_layers == 6
    with pytest.raises(BadInputError, match="between 1 and 6"):
        train_reranker(_pairs(fixture_products), tmp_path / "nine", TrainConfig(device="cpu", layers=9))


def test_the_layer_setting_leaves_older_model_names_alone():
    from training.finetune import TrainConfig, _run_key

    # the name of a 6-layer run is what it was before ``layers`` existed (caches and exports use it)
    assert _run_key("d", TrainConfig()) == _run_key("d", TrainConfig(layers=None))
    assert _run_key("d", TrainConfig()) != _run_key("d", TrainConfig(layers=2))
    with pytest.raises(BadInputError, match="layers must be at least 1"):
        TrainConfig(layers=0)


def test_the_served_cross_encoder_takes_the_processs_thread_share(exported, tmp_path):
    """`serve --workers N` gives each worker SHOPRANK_MODEL_THREADS; the cross-encoder's session
    must keep to it (it took every core in each worker, so N workers ran N × cores threads)."""
    from plugin_api.backends import pipeline_parts
    from plugin_api.settings import Settings

    out, _ = exported
    s = Settings(
        data_dir=tmp_path,
        reranker_path=out,
        reranker_runtime="onnx-int8",
        model_threads=1,
        device="cpu",
        query_understanding=False,
    )
    parts = pipeline_parts(s, retriever=None, with_reranker=True)  # type: ignore[arg-type]
    inner = getattr(parts.reranker, "inner", parts.reranker)
    session = inner.load()
    assert session.get_session_options().intra_op_num_threads == 1
