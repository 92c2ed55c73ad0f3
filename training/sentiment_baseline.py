"""TF-IDF + logistic-regression sentiment baseline: the bar a fine-tuned MiniLM classifier must clear.

English: word 1-2-grams; Chinese: character 1-3-grams (no tokenizer needed). Run the reference
table with ``python -m training.sentiment_baseline [--data ../shared/data]``:

* English Blitzer, all four domains pooled, 80/20 split by product (asin);
* English Blitzer, electronics + kitchen only, 80/20 by product;
* Chinese online_shopping_10_cats, 80/20 random (the corpus has no product ids).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexer.errors import BadInputError
from training.reviews_data import Review, read_blitzer, read_chinese_shopping, split_by_product

log = logging.getLogger(__name__)

DEFAULT_C = 4.0
SEED = 13


def make_pipeline(lang: str, C: float = DEFAULT_C, seed: int = SEED) -> Any:
    """TfidfVectorizer (word 1-2-grams for "en", char 1-3-grams for "zh") → LogisticRegression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if lang == "en":
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True)
    elif lang == "zh":
        vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True)
    else:
        raise BadInputError(f"lang must be 'en' or 'zh', got {lang!r}")
    clf = LogisticRegression(C=C, max_iter=1000, random_state=seed)
    return Pipeline([("tfidf", vec), ("logreg", clf)])


def tfidf_logreg_baseline(
    train: Sequence[Review],
    test: Sequence[Review],
    lang: str,
    C: float = DEFAULT_C,
    tune_C: Sequence[float] = (),
    seed: int = SEED,
) -> dict[str, float]:
    """Fit on ``train``, score on ``test``: accuracy, macro-F1, majority-class accuracy, sizes.

    ``tune_C`` (e.g. ``(1, 4, 16)``): pick C by 3-fold stratified CV on ``train`` only (never on
    ``test``); otherwise the fixed ``C`` is used.
    """
    from sklearn.metrics import accuracy_score, f1_score

    if not train or not test:
        raise BadInputError(f"need reviews on both sides (train {len(train)}, test {len(test)})")
    y_train = [r.label for r in train]
    if len(set(y_train)) < 2:
        raise BadInputError("the training set holds one class only; a classifier needs both labels")
    x_train = [r.text for r in train]
    if tune_C:
        C = _pick_C(x_train, y_train, lang, tune_C, seed)
    start = time.perf_counter()
    model = make_pipeline(lang, C, seed).fit(x_train, y_train)
    y_test = [r.label for r in test]
    pred = model.predict([r.text for r in test])
    positive = sum(y_test) / len(y_test)
    metrics = {
        "accuracy": float(accuracy_score(y_test, pred)),
        "macro_f1": float(f1_score(y_test, pred, average="macro")),
        "majority_accuracy": max(positive, 1 - positive),
        "n_train": float(len(train)),
        "n_test": float(len(test)),
        "C": float(C),
        "seconds": time.perf_counter() - start,
    }
    log.info("tfidf+logreg (%s, C=%g): %s", lang, C, {k: round(v, 4) for k, v in metrics.items()})
    return metrics


def _pick_C(x: list[str], y: list[int], lang: str, grid: Sequence[float], seed: int) -> float:
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    scores = {c: cross_val_score(make_pipeline(lang, c, seed), x, y, cv=folds).mean() for c in grid}
    best = max(grid, key=lambda c: (scores[c], -c))
    log.info("C by 3-fold CV on train: %s → %g", {c: round(float(s), 4) for c, s in scores.items()}, best)
    return float(best)


def run_table(data: Path, seed: int = SEED, tune_C: Sequence[float] = ()) -> list[dict[str, Any]]:
    """The three reference rows (see the module docstring)."""
    blitzer = data / "reviews_en" / "blitzer_mds"
    rows: list[dict[str, Any]] = []
    for name, domains in (
        ("en Blitzer, 4 domains pooled", ("books", "dvd", "electronics", "kitchen")),
        ("en Blitzer, electronics+kitchen", ("electronics", "kitchen")),
    ):
        split = split_by_product(read_blitzer(blitzer, domains).items, 0.2, seed)
        m = tfidf_logreg_baseline(split.train, split.test, "en", tune_C=tune_C, seed=seed)
        rows.append({"set": name, "split": "80/20 by product", **m, "note": split.describe()})
    zh = read_chinese_shopping(data / "reviews_zh" / "online_shopping_10_cats.zip")
    split = split_by_product(zh.items, 0.2, seed)
    m = tfidf_logreg_baseline(split.train, split.test, "zh", tune_C=tune_C, seed=seed)
    overlap = len({r.text for r in split.train} & {r.text for r in split.test})
    note = f"{split.describe()}; {len(zh.errors)} empty reviews skipped; {overlap} test texts also in train"
    rows.append({"set": "zh online_shopping_10_cats", "split": "80/20 random", **m, "note": note})
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    head = "| data | split | train | test | C | accuracy | macro-F1 | majority acc. | fit+predict s |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['split']} | {int(r['n_train'])} | {int(r['n_test'])} | {r['C']:g} | "
            f"{r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['majority_accuracy']:.4f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)
