"""The n-gram head stored as arrays scores exactly like the scikit-learn pipeline it came from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indexer.errors import BadInputError, IndexMismatchError
from ranker.signals.ngram_sentiment import NgramHead, logit
from training.reviews_data import Review
from training.sentiment_baseline import make_pipeline

GOOD = ["great product, love it", "excellent quality", "works perfectly, very happy", "love the quality"]
BAD = ["terrible, broke after a day", "awful quality", "stopped working, very disappointed", "broke, awful"]
ZH_GOOD = ["质量很好，非常满意", "很好用，值得购买", "满意，物流很快"]
ZH_BAD = ["质量太差，很失望", "太差了，不推荐", "失望，退货了"]


def _fit(lang, good, bad):
    texts = good * 2 + bad * 2
    return make_pipeline(lang).fit(texts, [1] * (2 * len(good)) + [0] * (2 * len(bad)))


@pytest.mark.parametrize("lang,good,bad", [("en", GOOD, BAD), ("zh", ZH_GOOD, ZH_BAD)])
def test_head_matches_the_fitted_pipeline_and_survives_a_round_trip(tmp_path, lang, good, bad):
    pipe = _fit(lang, good, bad)
    head = NgramHead.from_pipeline(pipe, (0.5, 1.5, -0.1))
    probe = ["love it, great", "awful, broke", "nothing in the vocabulary", "很好，满意", "太差，失望"]
    expected = pipe.predict_proba(probe)[:, 1]
    np.testing.assert_allclose(head.ngram_probabilities(probe), expected, atol=1e-9)
    head.save(tmp_path / "ngram")
    again = NgramHead.load(tmp_path / "ngram")
    np.testing.assert_allclose(again.ngram_probabilities(probe), expected, atol=1e-9)
    assert again.stack == (0.5, 1.5, -0.1) and again.vocabulary == head.vocabulary


def test_stack_weights_combine_the_two_logits():
    pipe = _fit("en", GOOD, BAD)
    texts = ["love it", "awful"]
    p = np.array([0.9, 0.2])
    q = pipe.predict_proba(texts)[:, 1]
    np.testing.assert_allclose(NgramHead.from_pipeline(pipe, (1, 0, 0)).combine(p, texts), p, atol=1e-9)
    np.testing.assert_allclose(NgramHead.from_pipeline(pipe, (0, 1, 0)).combine(p, texts), q, atol=1e-9)
    mixed = NgramHead.from_pipeline(pipe, (0.3, 0.7, 0.2)).combine(p, texts)
    np.testing.assert_allclose(logit(mixed), 0.3 * logit(p) + 0.7 * logit(q) + 0.2, atol=1e-6)


def test_a_damaged_head_is_refused(tmp_path):
    NgramHead.from_pipeline(_fit("en", GOOD, BAD), (1, 1, 0)).save(tmp_path)
    meta = json.loads((tmp_path / "head.json").read_text())
    (tmp_path / "head.json").write_text(json.dumps({**meta, "features": meta["features"] + 1}))
    with pytest.raises(IndexMismatchError, match="inconsistent"):
        NgramHead.load(tmp_path)
    (tmp_path / "idf.npy").unlink()
    with pytest.raises(IndexMismatchError, match="sentiment-blend"):
        NgramHead.load(tmp_path)


def test_heldout_split_keeps_the_bench_sample_as_test():
    import random

    from training.sentiment_blend import split_heldout

    rows = [Review(f"r{i}", i % 2, f"p{i}", "d") for i in range(50)]
    dev, test = split_heldout(rows, 20)
    assert test == random.Random(13).sample(rows, 20)
    assert len(dev) == 30 and not {r.text for r in dev} & {r.text for r in test}
    with pytest.raises(BadInputError, match="between 1 and 49"):
        split_heldout(rows, 50)


def test_accuracy_gain_counts_the_reviews_each_side_gets_right():
    from training.sentiment_blend import accuracy_gain

    y = np.array([1, 1, 0, 0, 1, 0])
    old = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])  # right on 0, 1, 5
    new = np.array([0.9, 0.8, 0.3, 0.4, 0.7, 0.6])  # right on 0, 1, 2, 3, 4
    gain = accuracy_gain(y, new, old)
    assert gain["delta"] == pytest.approx(2 / 6, abs=1e-4)
    assert (gain["wins"], gain["losses"], gain["ties"], gain["reviews"]) == (3, 1, 2, 6)
    assert gain["accuracy_old"] == pytest.approx(0.5) and gain["accuracy_new"] == pytest.approx(
        5 / 6, abs=1e-4
    )
    assert gain["low"] <= gain["delta"] <= gain["high"]
