"""Review sentiment: the classifier we fine-tune (``shoprank train sentiment``), served for scoring.

A score is in [-1, 1]: ``2 · P(positive) - 1``. The model folder holds ``model/`` (a one-logit
MiniLM sequence classifier and its tokenizer) and a ``sentiment`` manifest, checked before load;
weights load on first use (or ``load()`` at server start-up), once. A folder made by
``shoprank train sentiment-blend`` also holds ``ngram/``, an n-gram head stacked onto MiniLM's
probability (:mod:`ranker.signals.ngram_sentiment`); its manifest says so under ``train_config.ngram_head``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from indexer.embedding.embedders import resolve_device
from indexer.errors import IndexMismatchError
from indexer.manifest import ModelManifest
from ranker.lazy import Once
from ranker.signals.ngram_sentiment import HEAD_DIR, NgramHead

log = logging.getLogger(__name__)
KIND = "sentiment"

# Long reviews are cut to their head and tail (where opinions and verdicts sit) before the
# tokenizer's 128-token limit would keep only the head. Chinese has no spaces: count characters.
HEAD_WORDS, TAIL_WORDS = 56, 32
HEAD_CHARS, TAIL_CHARS = 80, 40


def clip_review(text: str) -> str:
    """The review's first and last words (or characters, for unspaced scripts) when it is long."""
    words = text.split()
    if len(words) > HEAD_WORDS + TAIL_WORDS:
        return " ".join(words[:HEAD_WORDS] + ["…"] + words[-TAIL_WORDS:])
    if len(words) <= 3 and len(text) > HEAD_CHARS + TAIL_CHARS:
        return text[:HEAD_CHARS] + "…" + text[-TAIL_CHARS:]
    return text


class SentimentModel(Protocol):
    """Scores review texts in [-1, 1] (negative … positive), in input order."""

    name: str

    def score(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMSentiment:
    def __init__(self, folder: str | Path, *, device: str = "auto", batch_size: int = 64):
        self.folder = Path(folder)
        self.manifest = ModelManifest.load(self.folder, kind=KIND)
        self.name = self.manifest.name
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self._loaded: Once[tuple[Any, Any]] = Once(self._open)
        self.blended = bool(self.manifest.train_config.get("ngram_head"))
        if self.blended and not (self.folder / HEAD_DIR / "head.json").exists():
            raise IndexMismatchError(
                f"{self.folder}'s manifest names an n-gram head but {HEAD_DIR}/ is missing; "
                "rebuild it with `shoprank train sentiment-blend`"
            )
        self._head: Once[NgramHead] = Once(lambda: NgramHead.load(self.folder / HEAD_DIR))

    def _open(self) -> tuple[Any, Any]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        log.info("loading sentiment model %s on %s", self.name, self.device)
        path = str(self.folder / "model")
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        return model.to(self.device).eval(), tokenizer

    def load(self) -> Any:
        if self.blended:
            self._head.get()
        return self._loaded.get()[0]

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) per text: MiniLM's, stacked with the n-gram head's when the model has one."""
        p = self.minilm_probabilities(texts)
        if self.blended and len(p):
            return self._head.get().combine(p, texts).astype(np.float32)
        return p

    def minilm_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) per text from the fine-tuned MiniLM alone."""
        import torch

        if not texts:
            return np.zeros(0, dtype=np.float32)
        model, tokenizer = self._loaded.get()
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = tokenizer(
                    [clip_review(t) for t in texts[i : i + self.batch_size]],
                    padding=True,
                    truncation=True,
                    max_length=self.manifest.max_length,
                    return_tensors="pt",
                ).to(self.device)
                out.append(torch.sigmoid(model(**enc).logits.float().view(-1)).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return 2.0 * self.probabilities(texts) - 1.0
