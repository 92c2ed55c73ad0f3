"""Fine-tune the review-sentiment classifier from the packaged all-MiniLM-L6-v2 checkpoint.

English: the Blitzer multi-domain reviews; Chinese: online_shopping_10_cats (MiniLM's uncased
WordPiece vocabulary covers CJK characters one by one). Held-out 20% by product
(:func:`~training.reviews_data.split_by_product`), the TF-IDF + logistic-regression baseline fitted
on the same split in the same run, and both results stored in the model's manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import BadInputError
from indexer.manifest import ModelManifest
from ranker.signals.sentiment import KIND, MiniLMSentiment, clip_review
from training.finetune import TrainConfig, TrainReport, fine_tune
from training.reviews_data import (
    BLITZER_DOMAINS,
    Review,
    read_blitzer,
    read_chinese_shopping,
    split_by_product,
)
from training.sentiment_baseline import tfidf_logreg_baseline

log = logging.getLogger(__name__)
LANGS = ("en", "zh")


@dataclass
class SentimentReport:
    train: TrainReport
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def data_hash(reviews: Sequence[Review]) -> str:
    h = hashlib.sha256()
    for r in reviews:
        h.update(json.dumps([r.text, r.label], ensure_ascii=False).encode())
    return h.hexdigest()


def load_split(
    lang: str, data: str | Path, *, seed: int = 13, domains: Sequence[str] = BLITZER_DOMAINS
) -> tuple[list[Review], list[Review]]:
    """The 80/20 by-product split of the language's review corpus under ``data`` (../shared/data)."""
    data = Path(data)
    if lang == "en":
        reviews = read_blitzer(data / "reviews_en" / "blitzer_mds", domains).items
    elif lang == "zh":
        reviews = read_chinese_shopping(data / "reviews_zh" / "online_shopping_10_cats.zip").items
    else:
        raise BadInputError(f"unknown language {lang!r}; choose from {', '.join(LANGS)}")
    split = split_by_product(reviews, 0.2, seed)
    return split.train, split.test


def classification_scores(y: Sequence[int] | np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of P(positive) ``p`` thresholded at 0.5 against labels ``y``."""
    from sklearn.metrics import accuracy_score, f1_score

    pred = (np.asarray(p) >= 0.5).astype(int)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro")),
        "n_test": float(len(pred)),
    }


def evaluate(model: MiniLMSentiment, test: Sequence[Review]) -> dict[str, float]:
    t = time.perf_counter()
    scores = classification_scores([r.label for r in test], model.probabilities([r.text for r in test]))
    return {**scores, "predict_seconds": time.perf_counter() - t}


def frequent_characters(texts: Sequence[str], min_count: int = 3, limit: int = 8000) -> tuple[str, ...]:
    """Non-ASCII characters seen at least ``min_count`` times, most frequent first."""
    counts: Counter[str] = Counter(ch for t in texts for ch in t if ord(ch) > 127 and not ch.isspace())
    return tuple(ch for ch, n in counts.most_common(limit) if n >= min_count)


def train_sentiment(
    train: Sequence[Review],
    test: Sequence[Review],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    lang: str,
    max_train: int | None = None,
    seed: int = 13,
    init_from: str | Path | None = None,
    progress: bool = False,
) -> SentimentReport:
    """Fine-tune on ``train`` (a seeded sample of ``max_train`` when given), evaluate on ``test``
    next to the TF-IDF baseline, and save the model with both results in its manifest.

    ``init_from``: a sentiment model this function saved earlier (for the same language) to
    continue training from, e.g. a second epoch with a fresh schedule; its manifest is checked."""
    base_model_path = None
    if init_from is not None:
        prior = ModelManifest.load(Path(init_from), kind=KIND)  # refuses other kinds and damage
        if not prior.name.startswith(f"shoprank-sentiment-{lang}-"):
            raise BadInputError(
                f"{init_from} holds {prior.name}, not a {lang} sentiment model; "
                f"pass one trained with --lang {lang}"
            )
        base_model_path = Path(init_from) / "model"
    rows = list(train)
    if max_train is not None and len(rows) > max_train:
        rows = random.Random(seed).sample(rows, max_train)
    if len({r.label for r in rows}) < 2:
        raise BadInputError("the training reviews hold one class only; a classifier needs both labels")
    baseline = tfidf_logreg_baseline(rows, list(test), lang, seed=seed)
    cfg = config or TrainConfig()
    if lang == "zh" and not cfg.extra_tokens:
        # MiniLM's English vocabulary maps about two thirds of Chinese characters to [UNK]:
        # give the frequent ones their own (trained) embeddings.
        cfg = replace(cfg, extra_tokens=frequent_characters([clip_review(r.text) for r in rows]))
    rep = fine_tune(
        [clip_review(r.text) for r in rows],
        None,
        [float(r.label) for r in rows],
        out_dir,
        cfg,
        kind=KIND,
        name_prefix=f"shoprank-sentiment-{lang}",
        data_hash=data_hash(rows),
        base_model_path=base_model_path,
        data_sources={
            f"{lang}:{d}": sum(r.domain == d for r in rows) for d in sorted({r.domain for r in rows})
        },
        progress=progress,
    )
    model = MiniLMSentiment(out_dir, device=rep.device)
    metrics: dict[str, Any] = {
        "minilm": evaluate(model, test),
        "tfidf_logreg": {k: baseline[k] for k in ("accuracy", "macro_f1", "n_train", "n_test")},
        "train": {"n_train": float(len(rows)), "steps": float(rep.steps), "seconds": rep.seconds},
    }
    # The held-out figures go into the manifest beside the model.
    replace(model.manifest, metrics={"held_out": metrics, "lang": lang}).save(Path(out_dir))
    return SentimentReport(rep, metrics)
