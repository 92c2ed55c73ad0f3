"""The cross-encoder served by onnxruntime: the ``shoprank export`` ONNX files, fp32 or int8.

Same contract as :class:`~ranker.rerank.cross_encoder.CrossEncoderReranker` (relevance in [0, 1] per
product, in input order) without torch: the tokenizer is the model folder's ``tokenizer.json`` run
by the ``tokenizers`` library, batches are padded to their longest pair only, and the ONNX file is
checked against the export manifest (and that against the model's manifest) before it is served.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from indexer.errors import IndexMismatchError
from indexer.manifest import ModelManifest, sha256_file
from indexer.product import Product
from ranker.lazy import Once
from ranker.rerank.cross_encoder import KIND, passage

log = logging.getLogger(__name__)

EXPORT_DIR = "onnx"
EXPORT_FILE = "export.json"
EXPORT_KIND = "onnx-export"
# precision -> file name inside ``<model folder>/onnx``
PRECISIONS = MappingProxyType({"fp32": "model.onnx", "int8": "model.int8.onnx"})


def load_export_manifest(folder: Path, source_name: str) -> dict[str, Any]:
    """The export manifest of ``folder`` (a model folder), checked against the model it came from."""
    path = folder / EXPORT_DIR / EXPORT_FILE
    if not path.exists():
        raise IndexMismatchError(
            f"no ONNX export in {folder / EXPORT_DIR}; make one with `shoprank export --reranker {folder}`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexMismatchError(f"corrupt export manifest {path} ({exc}); export again") from exc
    if data.get("kind") != EXPORT_KIND or data.get("source") != source_name:
        raise IndexMismatchError(
            f"{path} was exported from {data.get('source')!r}, but the model in {folder} is "
            f"{source_name!r}; export again with `shoprank export --reranker {folder}`"
        )
    return dict(data)


class OnnxCrossEncoderReranker:
    """Scores (query, product) pairs with an exported cross-encoder on onnxruntime."""

    def __init__(
        self,
        folder: str | Path,
        *,
        precision: str = "int8",
        batch_size: int = 16,
        threads: int | None = None,
        device: str = "auto",
    ):
        if precision not in PRECISIONS:
            raise IndexMismatchError(
                f"unknown ONNX precision {precision!r}; choose from {', '.join(PRECISIONS)}"
            )
        self.folder = Path(folder)
        self.manifest = ModelManifest.load(self.folder, kind=KIND)
        self.export = load_export_manifest(self.folder, self.manifest.name)
        entry = self.export.get("files", {}).get(precision)
        if not entry:
            raise IndexMismatchError(
                f"the export in {self.folder / EXPORT_DIR} has no {precision} model; export again"
            )
        self.path = self.folder / EXPORT_DIR / entry["file"]
        self.sha256 = entry["sha256"]
        self.precision = precision
        self.name = f"{self.manifest.name}-onnx-{precision}"
        self.batch_size = batch_size
        self.threads = threads
        self.device = device
        self._session: Once[Any] = Once(self._open)
        self._tokenizer: Any = None
        self._inputs: list[str] = []

    def load(self) -> Any:
        return self._session.get()

    def _open(self) -> Any:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if not self.path.exists() or sha256_file(self.path) != self.sha256:
            raise IndexMismatchError(
                f"{self.path} is missing or differs from its export manifest; export again"
            )
        tok = Tokenizer.from_file(str(self.folder / "model" / "tokenizer.json"))
        tok.enable_truncation(self.manifest.max_length, strategy="longest_first")
        tok.no_padding()  # batches are padded by hand, after grouping pairs of similar length
        self._pad_id = tok.token_to_id("[PAD]") or 0
        self._tokenizer = tok
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads or (os.cpu_count() or 1)
        providers = ["CPUExecutionProvider"]
        if self.device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        log.info("loading ONNX reranker %s (%s) with %s", self.name, self.path.name, providers[0])
        session = ort.InferenceSession(str(self.path), opts, providers=providers)
        self._inputs = [i.name for i in session.get_inputs()]
        return session

    def encode(self, pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        """Token ids, attention mask and segment ids of the pairs, padded to the longest."""
        self.load()
        return self._pad(self._tokenizer.encode_batch(list(pairs)))

    def _pad(self, enc: Sequence[Any]) -> dict[str, np.ndarray]:
        width = max(len(e.ids) for e in enc)
        ids = np.full((len(enc), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(enc), width), dtype=np.int64)
        types = np.zeros((len(enc), width), dtype=np.int64)
        for i, e in enumerate(enc):
            n = len(e.ids)
            ids[i, :n], mask[i, :n], types[i, :n] = e.ids, e.attention_mask, e.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def score(self, query: str, products: Sequence[Product]) -> np.ndarray:
        """Relevance in [0, 1] (sigmoid of the logit) for each product, in input order.

        Pairs are sorted by token length and batched in that order, so a batch pads to a
        length close to its own pairs' rather than to the longest pair of the request.
        """
        if not products:
            return np.zeros(0, dtype=np.float32)
        session = self.load()
        enc = self._tokenizer.encode_batch([(query, passage(p)) for p in products])
        order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
        logits = np.zeros(len(enc), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            feed = self._pad([enc[i] for i in idx])
            out = session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
            logits[idx] = np.asarray(out, dtype=np.float32).reshape(-1)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
