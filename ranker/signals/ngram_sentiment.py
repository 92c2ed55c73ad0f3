"""An n-gram head stacked onto the fine-tuned MiniLM sentiment classifier.

The head is the TF-IDF + logistic-regression recipe of the baseline (word 1-2-grams for English,
character 1-3-grams for Chinese), stored as plain arrays in the model folder's ``ngram/``: the
vocabulary (JSON), the idf and the coefficients (``.npy``). It catches set phrases in short
reviews that MiniLM's subword model misses. The two are stacked by three weights learnt on
held-out reviews that neither part was trained on (``shoprank train sentiment-blend``):

    P(positive) = σ(a · logit P_minilm + b · logit P_ngram + c)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import IndexMismatchError

HEAD_DIR = "ngram"
_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.asarray(np.log(p / (1.0 - p)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


@dataclass(frozen=True)
class NgramHead:
    analyzer: str  # "word" or "char"
    ngram_range: tuple[int, int]
    lowercase: bool
    vocabulary: tuple[str, ...]
    idf: np.ndarray
    coef: np.ndarray
    intercept: float
    stack: tuple[float, float, float]  # a (MiniLM logit), b (n-gram logit), c (bias)

    @classmethod
    def from_pipeline(cls, pipeline: Any, stack: Sequence[float]) -> NgramHead:
        """Take the arrays out of a fitted TfidfVectorizer → LogisticRegression pipeline
        (:func:`training.sentiment_baseline.make_pipeline`)."""
        vec, clf = pipeline[0], pipeline[-1]
        if not (vec.sublinear_tf and vec.norm == "l2" and vec.use_idf):
            raise ValueError("the n-gram head stores sublinear, l2-normalised TF-IDF only")
        vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
        a, b, c = (float(x) for x in stack)
        return cls(
            analyzer=str(vec.analyzer),
            ngram_range=(int(vec.ngram_range[0]), int(vec.ngram_range[1])),
            lowercase=bool(vec.lowercase),
            vocabulary=tuple(vocab),
            idf=np.asarray(vec.idf_, dtype=np.float64),
            coef=np.asarray(clf.coef_[0], dtype=np.float64),
            intercept=float(clf.intercept_[0]),
            stack=(a, b, c),
        )

    def ngram_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) from the n-gram part alone (equal to the fitted pipeline's predict_proba)."""
        from sklearn.preprocessing import normalize

        if not texts:
            return np.zeros(0)
        counts = self._counter.transform(list(texts))
        counts.data = np.log(counts.data) + 1.0  # sublinear tf
        tfidf = normalize(counts.multiply(self.idf).tocsr(), norm="l2")
        return sigmoid(tfidf @ self.coef + self.intercept)

    @cached_property
    def _counter(self) -> Any:
        """The n-gram counter over the stored vocabulary (built once: the vocabulary is large)."""
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(
            analyzer=self.analyzer,
            ngram_range=self.ngram_range,
            lowercase=self.lowercase,
            vocabulary={t: i for i, t in enumerate(self.vocabulary)},
            dtype=np.float64,
        )

    def combine(self, p_minilm: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The stacked P(positive) given MiniLM's probabilities for the same texts."""
        a, b, c = self.stack
        return sigmoid(a * logit(p_minilm) + b * logit(self.ngram_probabilities(texts)) + c)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocabulary.json").write_text(json.dumps(list(self.vocabulary), ensure_ascii=False))
        np.save(folder / "idf.npy", self.idf)
        np.save(folder / "coef.npy", self.coef)
        (folder / "head.json").write_text(json.dumps(self.describe(), indent=2, sort_keys=True))

    def describe(self) -> dict[str, Any]:
        return {
            "analyzer": self.analyzer,
            "ngram_range": list(self.ngram_range),
            "lowercase": self.lowercase,
            "features": len(self.vocabulary),
            "intercept": self.intercept,
            "stack": {"minilm": self.stack[0], "ngram": self.stack[1], "bias": self.stack[2]},
        }

    @classmethod
    def load(cls, folder: Path) -> NgramHead:
        """Read ``folder`` (a model's ``ngram/``), checking the arrays agree with ``head.json``."""
        try:
            meta = json.loads((folder / "head.json").read_text())
            vocab = tuple(json.loads((folder / "vocabulary.json").read_text(encoding="utf-8")))
            idf, coef = np.load(folder / "idf.npy"), np.load(folder / "coef.npy")
            stack = meta["stack"]
            head = cls(
                analyzer=meta["analyzer"],
                ngram_range=(int(meta["ngram_range"][0]), int(meta["ngram_range"][1])),
                lowercase=bool(meta["lowercase"]),
                vocabulary=vocab,
                idf=idf,
                coef=coef,
                intercept=float(meta["intercept"]),
                stack=(float(stack["minilm"]), float(stack["ngram"]), float(stack["bias"])),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexMismatchError(
                f"unreadable n-gram head in {folder} ({exc}); rebuild it with `shoprank train sentiment-blend`"
            ) from exc
        n = int(meta.get("features", -1))
        if not (len(vocab) == idf.shape[0] == coef.shape[0] == n):
            raise IndexMismatchError(
                f"the n-gram head in {folder} is inconsistent (head.json says {n} features, vocabulary "
                f"{len(vocab)}, idf {idf.shape[0]}, coefficients {coef.shape[0]}); rebuild it with "
                "`shoprank train sentiment-blend`"
            )
        return head
