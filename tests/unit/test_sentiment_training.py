"""A tiny real fine-tuning run of the review-sentiment classifier (CPU, a few dozen steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indexer.errors import BadInputError, IndexMismatchError
from training.reviews_data import Review

pytestmark = pytest.mark.model

GOOD = [
    "great product, love it",
    "excellent quality and fast",
    "works perfectly, very happy",
    "amazing value, highly recommend",
    "best purchase this year",
    "fantastic, does the job well",
]
BAD = [
    "terrible, broke after a day",
    "awful quality, waste of money",
    "stopped working, very disappointed",
    "poor build, do not buy",
    "worst purchase ever",
    "useless, returned it at once",
]


def _reviews(texts, label, domain):
    return [Review(t, label, f"{domain}-{i}", domain) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, minilm):
    from training.finetune import TrainConfig
    from training.sentiment import train_sentiment

    out = tmp_path_factory.mktemp("sentiment")
    train = _reviews(GOOD * 2, 1, "a") + _reviews(BAD * 2, 0, "a")
    test = _reviews(["really great, love it", "broke at once, awful"], 1, "b")
    test = [test[0], Review(test[1].text, 0, "b-1", "b")]
    cfg = TrainConfig(
        epochs=10, batch_size=8, lr=1e-4, max_length=32, device="cpu", max_steps=24, checkpoint_every=0
    )
    return out, train_sentiment(train, test, out, cfg, lang="en")


def test_sentiment_learns_and_reports_next_to_the_baseline(trained):
    from ranker.signals.sentiment import MiniLMSentiment

    out, rep = trained
    assert rep.train.steps == 24 and rep.train.losses[-1] < rep.train.losses[0]
    model = MiniLMSentiment(out, device="cpu")
    s = model.score(["love it, great quality", "awful, broke after a day"])
    assert s.shape == (2,) and np.all((s >= -1) & (s <= 1)) and s[0] > s[1]
    m = model.manifest
    assert m.kind == "sentiment" and m.name.startswith("shoprank-sentiment-en-")
    held = m.metrics["held_out"]
    assert set(held) == {"minilm", "tfidf_logreg", "train"} and held["minilm"]["n_test"] == 2
    assert m.data_sources == {"en:a": 24}


def test_sentiment_model_folder_is_checked(trained, tmp_path):
    from ranker.rerank.cross_encoder import CrossEncoderReranker
    from ranker.signals.sentiment import MiniLMSentiment

    out, _ = trained
    with pytest.raises(IndexMismatchError, match="not a 'cross-encoder' model"):
        CrossEncoderReranker(out)
    bad = tmp_path / "bad"
    bad.mkdir()
    data = json.loads((out / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**data, "kind": "cross-encoder"}))
    with pytest.raises(IndexMismatchError, match="not a 'sentiment' model"):
        MiniLMSentiment(bad)


def test_training_continues_from_an_earlier_model(trained, tmp_path):
    """``init_from`` warm-starts from a saved model (e.g. a second epoch): the first losses are
    already those of a trained model, and the manifest names where it started."""
    from ranker.signals.sentiment import MiniLMSentiment
    from training.finetune import TrainConfig
    from training.sentiment import train_sentiment

    out, first = trained
    train = _reviews(GOOD * 2, 1, "a") + _reviews(BAD * 2, 0, "a")
    test = [Review("really great, love it", 1, "b-0", "b"), Review("broke at once, awful", 0, "b-1", "b")]
    cfg = TrainConfig(
        epochs=1, batch_size=8, lr=2e-5, max_length=32, device="cpu", max_steps=3, checkpoint_every=0, seed=14
    )
    rep = train_sentiment(train, test, tmp_path / "more", cfg, lang="en", init_from=out)
    assert rep.train.losses[0] < first.train.losses[0]
    model = MiniLMSentiment(tmp_path / "more", device="cpu")
    assert model.manifest.base_model == str(out / "model")
    s = model.score(["love it, great quality", "awful, broke after a day"])
    assert s[0] > s[1]
    with pytest.raises(BadInputError, match="not a zh sentiment model"):
        train_sentiment(train, test, tmp_path / "zh", cfg, lang="zh", init_from=out)
    with pytest.raises(IndexMismatchError):
        train_sentiment(train, test, tmp_path / "none", cfg, lang="en", init_from=tmp_path / "missing")
    assert not (tmp_path / "zh").exists() and not (tmp_path / "none").exists()


def test_one_class_training_data_is_refused(tmp_path):
    from training.sentiment import train_sentiment

    with pytest.raises(BadInputError, match="one class only"):
        train_sentiment(_reviews(GOOD, 1, "a"), _reviews(BAD, 0, "b"), tmp_path, lang="en")


def test_long_reviews_keep_head_and_tail():
    from ranker.signals.sentiment import HEAD_WORDS, TAIL_WORDS, clip_review

    words = [f"w{i}" for i in range(300)]
    clipped = clip_review(" ".join(words)).split()
    assert clipped[:HEAD_WORDS] == words[:HEAD_WORDS] and clipped[-TAIL_WORDS:] == words[-TAIL_WORDS:]
    assert len(clipped) == HEAD_WORDS + TAIL_WORDS + 1 and clip_review("short and sweet") == "short and sweet"
    zh = "好" * 100 + "差" * 100
    assert clip_review(zh).startswith("好" * 80) and clip_review(zh).endswith("差" * 40)


def test_chinese_training_adds_the_missing_characters_to_the_vocabulary(tmp_path, minilm):
    """MiniLM's vocabulary maps most Chinese characters to [UNK]; the zh run gives frequent ones
    their own embeddings, and the saved model reloads with them."""
    from transformers import AutoTokenizer

    from ranker.signals.sentiment import MiniLMSentiment
    from training.finetune import TrainConfig
    from training.sentiment import frequent_characters, train_sentiment

    good, bad = (
        ["质量很好，非常满意", "很好用，值得购买", "满意，物流很快"],
        ["质量太差，很失望", "太差了，不推荐", "失望，退货了"],
    )
    train = _reviews(good * 3, 1, "zh") + _reviews(bad * 3, 0, "zh")
    test = [Review("很好，满意", 1, "t-0", "t"), Review("太差，失望", 0, "t-1", "t")]
    chars = frequent_characters([r.text for r in train])
    assert "满" in chars and "，" in chars and "a" not in chars
    cfg = TrainConfig(
        epochs=14, batch_size=6, lr=1e-4, max_length=24, device="cpu", max_steps=40, checkpoint_every=0
    )
    rep = train_sentiment(train, test, tmp_path, cfg, lang="zh")
    assert rep.train.losses[-1] < rep.train.losses[0]
    model = MiniLMSentiment(tmp_path, device="cpu")
    added = model.manifest.train_config["tokens_added"]
    assert added > 10 and model.manifest.train_config["extra_tokens"] == len(chars)
    tok = AutoTokenizer.from_pretrained(tmp_path / "model", local_files_only=True)
    assert tok.unk_token_id not in tok("满意")["input_ids"]
    assert model.score(["很好，满意"]).shape == (1,)


def test_blend_stacks_an_ngram_head_into_a_new_folder(trained, tmp_path):
    """``blend_sentiment`` learns the stack on dev reviews, scores MiniLM, the baseline and the
    stack on test reviews, and writes a new model; the source folder is left as it was."""
    from ranker.signals.sentiment import MiniLMSentiment
    from training.sentiment_blend import blend_sentiment

    src, _ = trained
    before = (src / "manifest.json").read_text()
    train = _reviews(GOOD * 2, 1, "a") + _reviews(BAD * 2, 0, "a")
    dev = _reviews(["great, love it", "excellent, very happy"], 1, "d") + _reviews(
        ["awful, broke", "terrible waste of money"], 0, "e"
    )
    test = _reviews(["really great, love it"], 1, "t") + _reviews(["broke at once, awful"], 0, "u")
    metrics = blend_sentiment(src, train, dev, test, tmp_path / "blend", lang="en", device="cpu")
    assert set(metrics) >= {"minilm", "tfidf_logreg", "blend", "blend_minus_tfidf"}
    assert metrics["blend"]["n_test"] == 2 and metrics["n_dev"] == 4
    assert metrics["head_C"]["chosen"] in (4.0, 16.0, 64.0) and "dev_cv@16" in metrics["head_C"]
    gain = metrics["blend_minus_tfidf"]
    assert gain["low"] <= gain["delta"] <= gain["high"]
    model = MiniLMSentiment(tmp_path / "blend", device="cpu")
    assert model.blended and model.name.startswith("shoprank-sentiment-en-blend-")
    assert model.manifest.base_model == str(src) and model.manifest.metrics["source"] in before
    texts = ["love it, great quality", "awful, broke after a day"]
    from ranker.signals.ngram_sentiment import HEAD_DIR, NgramHead

    head = NgramHead.load(tmp_path / "blend" / HEAD_DIR)
    np.testing.assert_allclose(
        model.probabilities(texts), head.combine(model.minilm_probabilities(texts), texts), atol=1e-6
    )
    assert model.score(texts)[0] > model.score(texts)[1]
    assert (src / "manifest.json").read_text() == before and not (src / HEAD_DIR).exists()

    # Refusals: same or non-empty folder, a model that is already blended, the wrong language.
    for out in (src, tmp_path / "blend"):
        with pytest.raises(BadInputError, match="not an empty new folder"):
            blend_sentiment(src, train, dev, test, out, lang="en", device="cpu")
    with pytest.raises(BadInputError, match="already carries an n-gram head"):
        blend_sentiment(tmp_path / "blend", train, dev, test, tmp_path / "again", lang="en", device="cpu")
    with pytest.raises(BadInputError, match="not a zh sentiment model"):
        blend_sentiment(src, train, dev, test, tmp_path / "zh", lang="zh", device="cpu")
    with pytest.raises(BadInputError, match="one class only"):
        blend_sentiment(src, train, dev[:2], test, tmp_path / "one", lang="en", device="cpu")
    assert not any((tmp_path / n).exists() for n in ("again", "zh", "one"))
    # A manifest that names a head whose files are gone is refused at load.
    (tmp_path / "blend" / HEAD_DIR / "head.json").unlink()
    with pytest.raises(IndexMismatchError, match="n-gram head but ngram/ is missing"):
        MiniLMSentiment(tmp_path / "blend")


def test_sentiment_blend_command_writes_the_stacked_model(trained, tmp_path, monkeypatch, capsys):
    import training.sentiment as sentiment
    from plugin_api.cli.main import main
    from ranker.signals.sentiment import MiniLMSentiment

    src, _ = trained
    train = _reviews(GOOD * 2, 1, "a") + _reviews(BAD * 2, 0, "a")
    heldout = _reviews(["great, love it", "excellent, very happy", "really great"], 1, "h") + _reviews(
        ["awful, broke", "terrible waste of money", "broke at once, awful"], 0, "n"
    )
    # Interleave so that both halves of the seeded held-out split hold both labels.
    heldout = [r for pair in zip(heldout[:3], heldout[3:], strict=True) for r in pair]
    seen = {}

    def fake_split(lang, data, *, seed=13, **_):
        seen.update(lang=lang, data=str(data), seed=seed)
        return train, heldout

    monkeypatch.setattr(sentiment, "load_split", fake_split)
    args = ["train", "sentiment-blend", "--model", str(src), "--lang", "en", "--data", str(tmp_path)]
    assert main([*args, "--out", str(tmp_path / "b"), "--test-size", "2", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert seen == {"lang": "en", "data": str(tmp_path), "seed": 13}
    assert out["held_out"]["blend"]["n_test"] == 2 and out["held_out"]["n_dev"] == 4
    assert MiniLMSentiment(tmp_path / "b").blended
