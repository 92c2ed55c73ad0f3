"""Fine-tune the cross-encoder reranker from the packaged all-MiniLM-L6-v2 checkpoint.

(query, product passage, graded label in [0, 1]) examples go through the shared loop in
:mod:`training.finetune`; the model is saved with a ``cross-encoder`` manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from indexer.errors import BadInputError
from training.finetune import BASE_MODEL, TrainConfig, TrainReport, fine_tune, load_base_model

KIND = "cross-encoder"
__all__ = ["BASE_MODEL", "KIND", "TrainConfig", "TrainReport", "load_base_model", "train_reranker"]


class PairExample(Protocol):
    @property
    def query(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def label(self) -> float: ...


def data_hash(examples: Sequence[PairExample]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.query, e.text, round(float(e.label), 6)], ensure_ascii=False).encode())
    return h.hexdigest()


def train_reranker(
    examples: Sequence[PairExample],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    base_model_path: str | Path | None = None,
    data_sources: dict[str, int] | None = None,
    metrics: dict[str, Any] | None = None,
    folds: list[dict[str, Any]] | None = None,
    progress: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainReport:
    """Train on (query, text, label) examples; the model and its manifest go to ``out_dir``.

    An interrupted run resumes from ``out_dir/checkpoint`` when the data and config are the same.
    """
    if not examples:
        raise BadInputError("no training examples; build a training set first")
    labels = [float(e.label) for e in examples]
    if min(labels) < 0 or max(labels) > 1:
        raise BadInputError("labels must be in [0, 1] (graded relevance / 3)")
    return fine_tune(
        [e.query for e in examples],
        [e.text for e in examples],
        labels,
        out_dir,
        config,
        kind=KIND,
        name_prefix="shoprank-reranker",
        data_hash=data_hash(examples),
        base_model_path=base_model_path,
        data_sources=data_sources,
        metrics=metrics,
        folds=folds,
        progress=progress,
        on_step=on_step,
    )
