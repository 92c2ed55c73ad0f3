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
    from ranker.sentiment import MiniLMSentiment

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
    from ranker.cross_encoder import CrossEncoderReranker
    from ranker.sentiment import MiniLMSentiment

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
    from ranker.sentiment import MiniLMSentiment
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
    from ranker.sentiment import HEAD_WORDS, TAIL_WORDS, clip_review

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

    from ranker.sentiment import MiniLMSentiment
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
