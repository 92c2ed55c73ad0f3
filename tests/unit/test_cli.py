"""The ``shoprank`` CLI end to end on the embedded backend (hashing embedder: no model needed)."""

import json

import pytest

from plugin_api.cli.main import main
from tests.conftest import FIXTURES


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPRANK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SHOPRANK_EMBEDDER", "hashing")
    return ["--data-dir", str(tmp_path / "data")]


def test_index_search_eval(env, tmp_path, capsys):
    assert main(["index", "--catalog", str(FIXTURES / "catalog.jsonl"), "--quiet", *env]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["documents"] == 30 and out["failed"] == 0 and out["embedded"] == 30

    assert main(["search", "ThinkPad notebook", "--json", "-k", "3", *env]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["hits"][0]["id"] == "p01" and len(res["hits"]) == 3
    assert set(res["hits"][0]["sources"]) == {"bm25", "vector"}

    assert main(["search", "printer", "--mode", "bm25", "--brand", "canon", *env]) == 0
    text = capsys.readouterr().out
    assert "[p17]" in text and "[p16]" not in text

    judgments = tmp_path / "j.csv"
    judgments.write_text(
        "query,docid,rating\nthinkpad,p01,3\nthinkpad,p02,1\nprinter,p16,2\nprinter,p17,2\nsoap,p01,0\n"
    )
    outdir = tmp_path / "eval"
    assert main(["eval", "--judgments", str(judgments), "--out", str(outdir), "--quiet", *env]) == 0
    metrics = json.loads((outdir / "metrics.json").read_text())
    assert set(metrics) == {"bm25", "vector", "hybrid"}
    keys = {
        "ndcg@10",
        "ndcg_condensed@10",
        "judged@10",
        "mrr@10",
        "recall@100",
        "latency_ms_p50",
        "latency_ms_p95",
        "queries",
        "ild@10",
        "distinct_brands@10",
    }
    for m in metrics.values():
        assert set(m) == keys and m["queries"] == 2 and 0 <= m["ndcg@10"] <= 1
    assert metrics["bm25"]["mrr@10"] == 1.0  # both queries put a relevant product first
    assert "| bm25 |" in (outdir / "report.md").read_text()
    comp = json.loads((outdir / "comparison.json").read_text())  # vector and hybrid against bm25
    assert comp["baseline"] == "bm25" and set(comp["vs"]) == {"vector", "hybrid"}
    for name, c in comp["vs"].items():
        assert c["queries"] == 2 and c["low"] <= c["delta"] <= c["high"]
        assert c["mean_a"] == pytest.approx(metrics["bm25"]["ndcg@10"], abs=1e-4)
        assert c["mean_b"] == pytest.approx(metrics[name]["ndcg@10"], abs=1e-4)


def test_bad_rows_are_reported_and_good_rows_indexed(env, capsys):
    # bad rows are reported and the good ones indexed: status 1, as every bulk command answers
    assert main(["index", "--catalog", str(FIXTURES / "catalog_with_errors.jsonl"), "--quiet", *env]) == 1
    captured = capsys.readouterr()
    assert "skipped catalog_with_errors.jsonl:2: invalid JSON" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["documents"] == 2


def test_clear_errors(env, tmp_path, capsys):
    assert main(["index", "--catalog", str(tmp_path / "nope.jsonl"), *env]) == 2
    assert "catalog not found" in capsys.readouterr().err
    assert main(["search", "x", *env]) == 2
    assert "build one with `shoprank index" in capsys.readouterr().err
    assert (
        main(["search", "x", "--backend", "opensearch", "--opensearch-url", "http://127.0.0.1:9", *env]) == 2
    )
    err = capsys.readouterr().err
    assert "scripts/opensearch start" in err and "Traceback" not in err
    # Indexing into a node that is down fails before embedding anything (nothing is cached).
    down = ["--backend", "opensearch", "--opensearch-url", "http://127.0.0.1:9"]
    assert main(["index", "--catalog", str(FIXTURES / "catalog.jsonl"), "--quiet", *down, *env]) == 2
    assert "not reachable" in capsys.readouterr().err
    assert not list((tmp_path / "cache").rglob("*.npy"))
    assert main(["index", "--catalog", str(FIXTURES / "catalog.jsonl"), "--quiet", *env]) == 0
    capsys.readouterr()
    # The index was built with the hashing embedder; the MiniLM model does not fit it.
    assert main(["search", "x", "--embedder", "minilm", *env]) == 2
    assert "re-index" in capsys.readouterr().err
    assert main(["search", " ", *env]) == 2
    assert "query is empty" in capsys.readouterr().err


def test_upsert_and_delete_commands(env, tmp_path, capsys):
    assert main(["index", "--catalog", str(FIXTURES / "catalog.jsonl"), "--quiet", *env]) == 0
    new = tmp_path / "new.jsonl"
    new.write_text(
        json.dumps({"id": "z1", "title": "Zyxel Quasar mesh router", "brand": "Zyxel", "price": 99})
        + "\n"
        + json.dumps({"id": "p09", "title": "Logitech Orbit trackball", "brand": "Logitech", "price": 79})
        + "\n"
        + "{broken\n"
    )
    capsys.readouterr()
    assert main(["upsert", "--catalog", str(new), *env]) == 1  # one bad row reported, two stored
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == {"upserted": 2, "bad_rows": 1, "failed": 0}
    assert main(["search", "quasar", "--mode", "bm25", "--json", *env]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)["hits"]] == ["z1"]
    assert main(["search", "orbit trackball", "--mode", "bm25", "--json", *env]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["id"] == "p09"
    assert main(["delete", "z1", "nope", *env]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"deleted": 1, "failed": 1} and "nope: not found" in captured.err
    assert main(["search", "quasar", "--mode", "bm25", "--json", *env]) == 0
    assert json.loads(capsys.readouterr().out)["hits"] == []


def test_reviews_ingest_needs_a_sentiment_model_and_export_needs_a_reranker(env, tmp_path, capsys):
    reviews = tmp_path / "r.jsonl"
    reviews.write_text('{"product_id": "p01", "rating": 5, "text": "great", "date": "2024-01-01"}\n')
    assert main(["reviews", "ingest", str(reviews), *env]) == 2
    assert "shoprank train sentiment" in capsys.readouterr().err
    assert main(["reviews", "ingest", str(reviews), "--sentiment-model", str(tmp_path / "none"), *env]) == 2
    assert "not a shoprank sentiment model" in capsys.readouterr().err
    assert main(["export", "--reranker", str(tmp_path / "none")]) == 2
    assert "not a shoprank cross-encoder model" in capsys.readouterr().err


def test_serve_needs_at_least_one_worker(env, capsys):
    assert main(["serve", "--workers", "0", *env]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_export_needs_exactly_one_target(env, capsys):
    assert main(["export"]) == 2
    assert "--reranker DIR or --embedder" in capsys.readouterr().err


def test_train_fusion_without_a_reranker_learns_text_weights(env, tmp_path, capsys):
    assert main(["index", "--catalog", str(FIXTURES / "catalog.jsonl"), "--quiet", *env]) == 0
    judgments = tmp_path / "j.csv"
    judgments.write_text(
        "query,docid,rating\nthinkpad,p01,3\nthinkpad,p02,1\nprinter,p16,2\nprinter,p17,3\nprinter,p14,0\n"
        "headphones,p07,3\nheadphones,p08,1\nlaptop,p01,3\nlaptop,p18,1\n"
    )
    capsys.readouterr()
    base = ["train", "fusion", "--judgments", str(judgments), "--folds", "2", *env]
    assert main([*base, "--out", str(tmp_path / "fusion")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((tmp_path / "fusion" / "fusion.json").read_text())
    assert saved["weights"]["cross_encoder"] == 0.0 and saved["meta"]["reranker"] is None
    assert len(saved["meta"]["folds"]) == 2 and 0.0 <= res["cross_validated"]["full"]["ndcg@10"] <= 1.0
    assert any(saved["weights"][f] != 0.0 for f in ("bm25", "vector", "retrieval"))
    # the learned file drives `full` in eval
    out = tmp_path / "eval"
    fusion_file = str(tmp_path / "fusion" / "fusion.json")
    args = [
        "eval",
        "--no-index",
        "--judgments",
        str(judgments),
        "--pipelines",
        "hybrid,full",
        "--out",
        str(out),
    ]
    assert main([*args, "--fusion-file", fusion_file, "--quiet", *env]) == 0
    assert set(json.loads((out / "metrics.json").read_text())) == {"hybrid", "full"}
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "bad"), "--features", "bm25,cross_encoder"]) == 2
    assert "cannot learn a cross_encoder weight" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "bad"), "--folds", "9"]) == 2
    assert "fewer --folds" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_help_lists_what_the_commands_accept(capsys):
    """Every flag has a help line, and the choices the help names are the ones accepted."""
    import argparse

    from indexer.embedding.embedders import EMBEDDERS
    from plugin_api.cli.main import build_parser
    from ranker.base import Mode
    from ranker.ranking.pipelines import PIPELINES

    assert set(PIPELINES) >= {m.value for m in Mode} | {"rerank", "full"}
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("search", "eval", "index"):
        for action in subs.choices[name]._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"`shoprank {name}` {action.option_strings or action.dest} has no help"
    eval_help = subs.choices["eval"].format_help()
    assert all(p in eval_help for p in PIPELINES)
    search_help = subs.choices["search"].format_help()
    assert all(e in search_help for e in EMBEDDERS)


def test_bulk_commands_share_one_exit_status_for_reported_rows(tmp_path, capsys):
    env = ["--data-dir", str(tmp_path / "data"), "--embedder", "hashing"]
    assert main(["index", "--catalog", str(FIXTURES / "catalog.jsonl"), "--quiet", *env]) == 0
    log = tmp_path / "events.jsonl"
    good = {"action_name": "click", "client_id": "c1", "timestamp": 1717527761998}
    log.write_text(json.dumps(good) + "\n" + "not json\n")
    assert main(["events", "ingest", str(log), *env]) == 1  # one bad line reported, the good one stored
    log.write_text(json.dumps(good) + "\n")
    assert main(["events", "ingest", str(log), *env]) == 0
    bad_catalog = tmp_path / "upsert.jsonl"
    bad_catalog.write_text(json.dumps({"id": "n1", "title": "New"}) + "\n" + json.dumps({"id": "n2"}) + "\n")
    assert main(["upsert", "--catalog", str(bad_catalog), *env]) == 1


def test_every_optional_module_names_its_extra() -> None:
    import tomllib

    from plugin_api.cli.main import OPTIONAL_MODULES
    from tests.conftest import ROOT

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"uvicorn", "fastapi", "onnxruntime", "transformers", "torch", "ranx"} <= set(OPTIONAL_MODULES)
    assert set(OPTIONAL_MODULES.values()) <= set(extras)


@pytest.mark.parametrize("module, argv, extra", [("uvicorn", ["serve"], "serve")])
def test_a_missing_optional_dependency_is_one_line_naming_the_extra(monkeypatch, capsys, module, argv, extra):
    import builtins

    real_import = builtins.__import__

    def no_such_module(name, *a, **kw):
        if name == module or name.startswith(module + "."):
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_such_module)
    monkeypatch.delitem(__import__("sys").modules, module, raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"pip install 'shoprank[{extra}]'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
