"""Stack an n-gram head onto a fine-tuned sentiment model (``shoprank train sentiment-blend``).

The held-out reviews (the 20% no model trained on) are cut in two, seeded: a *dev* part, on which
the three stacking weights are learnt (logistic regression on the two parts' logits), and a *test*
part, on which MiniLM alone, the TF-IDF baseline alone and the stack are all scored, with a paired
bootstrap interval for the stack's accuracy gain over the baseline. The n-gram part is the
baseline's recipe, fitted on the same training reviews, with its regularisation C chosen on the dev
part. The result is written to a new folder (a copy
of the MiniLM model, ``ngram/`` and a manifest naming the source); the source is left as it was.
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import BadInputError
from ranker.evaluation.significance import paired_bootstrap
from ranker.signals.ngram_sentiment import HEAD_DIR, NgramHead, logit
from ranker.signals.sentiment import MiniLMSentiment
from training.reviews_data import Review
from training.sentiment import classification_scores, data_hash
from training.sentiment_baseline import DEFAULT_C, SEED, make_pipeline

log = logging.getLogger(__name__)


def split_heldout(
    heldout: Sequence[Review], n_test: int, seed: int = SEED
) -> tuple[list[Review], list[Review]]:
    """``(dev, test)``: ``test`` is a seeded sample of ``n_test`` held-out reviews (the same sample
    ``bench.sentiment`` has always scored for Chinese), ``dev`` the rest in their original order."""
    if not 0 < n_test < len(heldout):
        raise BadInputError(
            f"the test part must keep between 1 and {len(heldout) - 1} of the {len(heldout)} held-out "
            f"reviews (got {n_test}); the rest fits the stacking weights"
        )
    test = random.Random(seed).sample(list(heldout), n_test)
    chosen = {id(r) for r in test}
    return [r for r in heldout if id(r) not in chosen], test


def accuracy_gain(
    y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, *, samples: int = 2000, seed: int = SEED
) -> dict[str, float | int]:
    """Accuracy of ``p_new`` minus that of ``p_old`` on the same reviews, with a seeded paired
    bootstrap 95% interval (reviews resampled with replacement; wins = reviews only ``p_new`` gets
    right)."""
    correct_old = {f"{i:07d}": float(ok) for i, ok in enumerate((p_old >= 0.5) == y)}
    correct_new = {f"{i:07d}": float(ok) for i, ok in enumerate((p_new >= 0.5) == y)}
    out = paired_bootstrap(correct_old, correct_new, samples=samples, seed=seed).as_dict()
    return {
        "reviews": out.pop("queries"),
        "accuracy_old": out.pop("mean_a"),
        "accuracy_new": out.pop("mean_b"),
        **out,
    }


def blend_sentiment(
    model_dir: str | Path,
    train: Sequence[Review],
    dev: Sequence[Review],
    test: Sequence[Review],
    out_dir: str | Path,
    *,
    lang: str,
    C_grid: Sequence[float] = (DEFAULT_C, 16.0, 64.0),
    seed: int = SEED,
    device: str = "auto",
) -> dict[str, Any]:
    """Fit the n-gram head on ``train``, the stack on ``dev``, score on ``test``, save to ``out_dir``.

    The head is the baseline's recipe with its C chosen from ``C_grid`` by a CV of the stack over
    ``dev``; the baseline itself (C = 4) is scored beside it on ``test``.

    ``model_dir`` is a MiniLM-only model from ``shoprank train sentiment`` for ``lang``; ``train``
    must be the reviews it was trained on (the split's training side) and ``dev``/``test`` reviews
    it never saw. Returns the held-out metrics also written to the new manifest."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    src_dir, out = Path(model_dir), Path(out_dir)
    source = MiniLMSentiment(src_dir, device=device)  # checks the manifest (kind, schema)
    if not source.name.startswith(f"shoprank-sentiment-{lang}-"):
        raise BadInputError(
            f"{src_dir} holds {source.name}, not a {lang} sentiment model; pass --lang to match"
        )
    if source.blended:
        raise BadInputError(
            f"{src_dir} already carries an n-gram head; blend the MiniLM-only model it was made from "
            f"({source.manifest.base_model})"
        )
    if out.resolve() == src_dir.resolve() or (out.exists() and any(out.iterdir())):
        raise BadInputError(
            f"{out} is not an empty new folder; choose one (the source model is kept as it is)"
        )
    for name, part in (("training", train), ("dev", dev), ("test", test)):
        if len({r.label for r in part}) < 2:
            raise BadInputError(
                f"the {name} reviews hold one class only; the stack needs both labels in each part"
            )
    x_train, y_train = [r.text for r in train], [r.label for r in train]
    baseline = make_pipeline(lang, DEFAULT_C, seed).fit(x_train, y_train)
    texts_dev, y_dev = [r.text for r in dev], np.array([r.label for r in dev])
    minilm_dev = logit(source.minilm_probabilities(texts_dev))
    # The head's regularisation: the C whose stack does best in a 5-fold CV over the dev reviews.
    folds = StratifiedKFold(n_splits=min(5, int(np.bincount(y_dev).min())), shuffle=True, random_state=seed)
    heads: dict[float, tuple[Any, np.ndarray, float]] = {}
    for c in C_grid:
        pipe = baseline if c == DEFAULT_C else make_pipeline(lang, c, seed).fit(x_train, y_train)
        x_dev = np.c_[minilm_dev, logit(pipe.predict_proba(texts_dev)[:, 1])]
        cv = (
            cross_val_score(LogisticRegression(C=1.0), x_dev, y_dev, cv=folds).mean()
            if folds.n_splits > 1
            else 0.0
        )
        heads[c] = (pipe, x_dev, float(cv))
    best = max(C_grid, key=lambda c: (heads[c][2], -c))
    pipeline, x_dev, _ = heads[best]
    log.info(
        "n-gram head C by the stack's dev CV: %s → %g", {c: round(h[2], 4) for c, h in heads.items()}, best
    )
    stacker = LogisticRegression(C=1.0, random_state=seed).fit(x_dev, y_dev)
    head = NgramHead.from_pipeline(pipeline, (*stacker.coef_[0], stacker.intercept_[0]))
    texts_test, y_test = [r.text for r in test], np.array([r.label for r in test])
    p_test = source.minilm_probabilities(texts_test).astype(np.float64)
    q_test = baseline.predict_proba(texts_test)[:, 1]
    blended = head.combine(p_test, texts_test)
    metrics: dict[str, Any] = {
        "minilm": classification_scores(y_test, p_test),
        "tfidf_logreg": classification_scores(y_test, q_test),
        "ngram_head": classification_scores(y_test, head.ngram_probabilities(texts_test)),
        "blend": classification_scores(y_test, blended),
        "blend_minus_tfidf": accuracy_gain(y_test, blended, q_test, seed=seed),
        "head_C": {"chosen": best, **{f"dev_cv@{c:g}": heads[c][2] for c in C_grid}},
        "n_dev": float(len(dev)),
        "n_train": float(len(train)),
    }
    log.info("sentiment blend (%s): %s", lang, metrics)
    digest = hashlib.sha256(f"{source.name}:{data_hash(train)}:{data_hash(dev)}".encode()).hexdigest()[:12]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src_dir / "model", tmp / "model")
    head.save(tmp / HEAD_DIR)
    manifest = replace(
        source.manifest,
        name=f"shoprank-sentiment-{lang}-blend-{digest}",
        base_model=str(src_dir),
        train_config={
            **source.manifest.train_config,
            "ngram_head": {
                **head.describe(),
                "C": best,
                "seed": seed,
                "train_hash": data_hash(train),
                "dev_hash": data_hash(dev),
            },
        },
        metrics={"held_out": metrics, "lang": lang, "source": source.name},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    manifest.save(tmp)
    if out.exists():
        out.rmdir()  # empty, checked above
    tmp.rename(out)
    return metrics
