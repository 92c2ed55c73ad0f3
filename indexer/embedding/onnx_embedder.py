"""The bi-encoder (all-MiniLM-L6-v2) served by onnxruntime: the ``shoprank export --embedder`` files.

The exported graph includes mean pooling and L2 normalization, so it returns the same unit vectors
as the sentence-transformers model (fp32: to about 1e-6; int8: approximately — the benchmark
measures what that costs in nDCG). Its ``model_id`` is the source model's, because its vectors live
in the same space and an index built with the torch model serves ONNX queries; the embedding
cache is keyed by ``cache_id`` instead, so int8 vectors never stand in for torch ones. The export
manifest (source model, file hashes) is checked before the model is served.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from indexer.errors import IndexMismatchError
from indexer.manifest import sha256_file

log = logging.getLogger(__name__)

EXPORT_FILE = "export.json"
EXPORT_KIND = "onnx-bi-encoder"
PRECISIONS = MappingProxyType({"fp32": "model.onnx", "int8": "model.int8.onnx"})


def load_export(folder: Path) -> dict[str, Any]:
    path = folder / EXPORT_FILE
    if not path.exists():
        raise IndexMismatchError(
            f"no ONNX bi-encoder export in {folder}; make one with `shoprank export --embedder`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexMismatchError(f"corrupt export manifest {path} ({exc}); export again") from exc
    if data.get("kind") != EXPORT_KIND:
        raise IndexMismatchError(
            f"{path} is not a bi-encoder export; export again with `shoprank export --embedder`"
        )
    return dict(data)


class OnnxEmbedder:
    """Embeds texts with the exported bi-encoder; batches sorted by length to cut padding."""

    def __init__(self, folder: str | Path, *, precision: str = "int8", threads: int | None = None):
        if precision not in PRECISIONS:
            raise IndexMismatchError(
                f"unknown ONNX precision {precision!r}; choose from {', '.join(PRECISIONS)}"
            )
        self.folder = Path(folder)
        self.export = load_export(self.folder)
        entry = self.export.get("files", {}).get(precision)
        if entry is None:
            raise IndexMismatchError(
                f"{self.folder} has no {precision} model; export again (without --no-quantize for int8)"
            )
        self.path = self.folder / entry["file"]
        if not self.path.exists() or sha256_file(self.path) != entry["sha256"]:
            raise IndexMismatchError(
                f"{self.path} is missing or does not match its export manifest; export again with "
                "`shoprank export --embedder`"
            )
        self.precision = precision
        self.model_id = str(self.export["source"])
        self.cache_id = f"{self.model_id}+onnx-{precision}"
        self.dimension = int(self.export["dimension"])
        self.max_length = int(self.export["max_length"])
        self.threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime as ort
                    from tokenizers import Tokenizer

                    opts = ort.SessionOptions()
                    opts.intra_op_num_threads = self.threads or min(4, os.cpu_count() or 1)
                    tok = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
                    tok.enable_truncation(self.max_length)
                    tok.enable_padding()
                    log.info("loading ONNX bi-encoder %s (%s)", self.path, self.precision)
                    self._tokenizer = tok
                    self._session = ort.InferenceSession(
                        str(self.path), opts, providers=["CPUExecutionProvider"]
                    )
        return self._session, self._tokenizer

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        session, tok = self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), unit="text", desc="embed (onnx)")
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tok.encode_batch([texts[i] for i in idx])
            feed = {
                "input_ids": np.asarray([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.asarray([e.type_ids for e in enc], dtype=np.int64),
            }
            out[idx] = session.run(None, feed)[0]
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out
