"""Cross-encoder reranking: the short product text it reads, and the model wrapper.

The model is one we fine-tune ourselves (``shoprank train reranker``) from the all-MiniLM-L6-v2
checkpoint; it is loaded from a local folder whose manifest is checked first, never from a hub.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.embedding.embedders import resolve_device
from indexer.manifest import ModelManifest
from indexer.product import Product
from ranker.lazy import Once

log = logging.getLogger(__name__)
KIND = "cross-encoder"

# Attributes worth a few tokens: they separate otherwise identical titles (colour, size, type).
KEY_ATTRIBUTES = (
    "product_type",
    "product_colour",
    "type",
    "form_factor",
    "display_diagonal",
    "capacity",
    "internal_memory",
    "storage_capacity",
    "connectivity_technology",
    "compatibility",
)
MAX_PASSAGE_CHARS = 300
MAX_ATTRIBUTE_CHARS = 60


def passage(p: Product, max_chars: int = MAX_PASSAGE_CHARS) -> str:
    """The product as the cross-encoder reads it: title, brand, category, a few key attributes.

    Short on purpose (reranking latency grows with input length); the same function builds the
    training pairs and the serving inputs, so both see the same text.
    """
    parts = [p.title]
    if p.brand and p.brand.lower() not in p.title.lower():
        parts.append(f"brand {p.brand}")
    if p.category and p.category.lower() not in p.title.lower():
        parts.append(p.category)
    attrs = []
    for key in KEY_ATTRIBUTES:
        v = p.attributes.get(key)
        if v is None or isinstance(v, bool):
            continue
        text = f"{v:g}" if isinstance(v, float) else str(v)[:MAX_ATTRIBUTE_CHARS]
        if text and text.lower() not in p.title.lower():
            attrs.append(f"{key.replace('_', ' ')} {text}")
    if attrs:
        parts.append("; ".join(attrs))
    text = " | ".join(parts)
    return text if len(text) <= max_chars else text[: max_chars - 1].rsplit(" ", 1)[0] + "…"


class CrossEncoderReranker:
    """Scores (query, product) pairs with a trained cross-encoder folder (``model/`` + manifest).

    The manifest is checked when the object is made; the weights load on first use (or
    ``load()``, which a server calls at start-up), once.
    """

    def __init__(self, folder: str | Path, *, device: str = "auto", batch_size: int = 64):
        self.folder = Path(folder)
        self.manifest = ModelManifest.load(self.folder, kind=KIND)
        self.name = self.manifest.name
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self._model: Once[Any] = Once(self._open)

    def _open(self) -> Any:
        from sentence_transformers.cross_encoder import CrossEncoder

        log.info("loading reranker %s on %s", self.name, self.device)
        return CrossEncoder(
            str(self.folder / "model"),
            max_length=self.manifest.max_length,
            local_files_only=True,
            device=self.device,
        )

    def load(self) -> Any:
        return self._model.get()

    def score(self, query: str, products: Sequence[Product]) -> np.ndarray:
        """Relevance in [0, 1] (sigmoid of the logit) for each product, in input order."""
        if not products:
            return np.zeros(0, dtype=np.float32)
        pairs = [(query, passage(p)) for p in products]
        scores = self.load().predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        return np.asarray(scores, dtype=np.float32).reshape(-1)
