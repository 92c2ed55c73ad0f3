"""`shoprank train reranker` end to end on the fixture catalog (tiny runs, CPU)."""

import json

import pytest

from plugin_api.cli.main import main
from tests.conftest import FIXTURES

pytestmark = pytest.mark.model

JUDGMENTS = """query,docid,rating
printer,p16,3
printer,p17,3
printer,p14,1
printers,p15,1
laptop,p01,3
laptop,p02,3
laptop,p18,1
headphones,p07,3
headphones,p08,2
smartphone,p29,3
smartphone,p30,3
usb stick,p11,3
"""


def test_train_reranker_with_cv_then_eval_rerank(tmp_path, monkeypatch, capsys, minilm):
    monkeypatch.setenv("SHOPRANK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SHOPRANK_EMBEDDER", "hashing")
    monkeypatch.setenv("SHOPRANK_DEVICE", "cpu")
    env = ["--data-dir", str(tmp_path / "data")]
    catalog = str(FIXTURES / "catalog.jsonl")
    judgments = tmp_path / "j.csv"
    judgments.write_text(JUDGMENTS)
    assert main(["index", "--catalog", catalog, "--quiet", *env]) == 0
    capsys.readouterr()
    out = tmp_path / "reranker"
    args = [
        "train",
        "reranker",
        "--catalog",
        catalog,
        "--judgments",
        str(judgments),
        "--out",
        str(out),
        "--folds",
        "2",
        "--max-steps",
        "4",
        "--max-length",
        "32",
        "--train-batch-size",
        "8",
        "--quiet",
        *env,
    ]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(res["cross_validated"]) == {"hybrid", "rerank"}
    assert set(res["final_sources"]) >= {"judged", "pseudo_pos"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "cross-encoder" and len(manifest["folds"]) == 2
    folds = manifest["folds"]
    # Query-level CV: "printer" and "printers" are one group, never split across train and test.
    tests = [set(f["test_queries"]) for f in folds]
    assert all(({"printer", "printers"} <= t) or not ({"printer", "printers"} & t) for t in tests)
    assert set().union(*tests) == {"printer", "printers", "laptop", "headphones", "smartphone", "usb stick"}
    assert (out / "folds" / "fold-0" / "manifest.json").exists()

    outdir = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "--judgments",
                str(judgments),
                "--pipelines",
                "hybrid,rerank",
                "--reranker",
                str(out),
                "--out",
                str(outdir),
                "--quiet",
                *env,
            ]
        )
        == 0
    )
    metrics = json.loads((outdir / "metrics.json").read_text())
    assert set(metrics) == {"hybrid", "rerank"} and metrics["rerank"]["queries"] == 6
    capsys.readouterr()
    assert (
        main(["eval", "--judgments", str(judgments), "--pipelines", "rerank", "--out", str(outdir), *env])
        == 2
    )
    assert "needs a trained reranker" in capsys.readouterr().err

    # `train fusion` on the fold models: the feature set (with or without the cross-encoder) is
    # chosen by nested CV and recorded; --no-select keeps the requested set.
    fusion_args = ["train", "fusion", "--reranker", str(out), "--judgments", str(judgments), *env]
    assert main([*fusion_args, "--out", str(tmp_path / "fusion")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((tmp_path / "fusion" / "fusion.json").read_text())
    meta = saved["meta"]
    assert res["feature_set"] == meta["feature_set"] in {"requested", "without cross_encoder"}
    assert set(meta["feature_set_cv_ndcg@10"]) == {"requested", "without cross_encoder"}
    assert len(meta["folds"]) == 2 and all(f["feature_set"] in meta["feature_sets"] for f in meta["folds"])
    if meta["feature_set"] == "without cross_encoder":
        assert saved["weights"].get("cross_encoder", 0.0) == 0.0
    assert "ndcg@10" in meta["cross_validated"]["full"]
    assert main([*fusion_args, "--out", str(tmp_path / "fusion2"), "--no-select"]) == 0
    meta2 = json.loads((tmp_path / "fusion2" / "fusion.json").read_text())["meta"]
    assert meta2["feature_set"] == "requested" and "feature_set_cv_ndcg@10" not in meta2


def test_train_sentiment_flags_reach_the_training_config():
    from plugin_api.cli.main import build_parser
    from plugin_api.cli.train_cli import train_config

    args = build_parser().parse_args(
        ["train", "sentiment", "--lang", "zh", "--out", "x", "--lr", "3e-5", "--max-length", "96"]
        + ["--train-batch-size", "16", "--max-steps", "7", "--seed", "5", "--epochs", "2"]
    )
    cfg = train_config(args, "cpu")
    assert (cfg.lr, cfg.max_length, cfg.batch_size, cfg.max_steps, cfg.seed, cfg.epochs, cfg.device) == (
        3e-5,
        96,
        16,
        7,
        5,
        2,
        "cpu",
    )
    assert args.init_from is None and args.split_seed == 13  # the split does not move with --seed
    more = build_parser().parse_args(["train", "sentiment", "--lang", "zh", "--out", "y", "--init-from", "x"])
    assert str(more.init_from) == "x"


def test_the_sentiment_data_folder_comes_from_settings_not_the_source_tree(monkeypatch, tmp_path):
    import argparse

    from plugin_api.cli.train_cli import _data

    monkeypatch.setenv("SHOPRANK_SHARED_DATA_DIR", str(tmp_path / "elsewhere"))
    assert _data(argparse.Namespace(data=None)) == tmp_path / "elsewhere"
    assert _data(argparse.Namespace(data=tmp_path / "given")) == tmp_path / "given"
    monkeypatch.delenv("SHOPRANK_SHARED_DATA_DIR")
    assert str(_data(argparse.Namespace(data=None))) == "../shared/data"  # relative: where it runs
