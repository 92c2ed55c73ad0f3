"""Which runtime serves the cross-encoder: a registry of factories, one per runtime."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from indexer.errors import BadInputError
from ranker.base import Reranker
from ranker.rerank.cross_encoder import CrossEncoderReranker
from ranker.rerank.onnx_cross_encoder import OnnxCrossEncoderReranker

# (folder, device, batch size, threads); None: the runtime's default
Factory = Callable[[Path, str, int | None, int | None], Reranker]

# torch pads one batch of a request's pairs; onnxruntime on CPU gains from small batches of
# similar-length pairs (see OnnxCrossEncoderReranker.score). torch takes its threads from the
# process (OMP_NUM_THREADS, which `serve --workers` sets per worker); onnxruntime from ``threads``.
RERANKER_RUNTIMES: Mapping[str, Factory] = MappingProxyType(
    {
        "torch": lambda folder, device, batch, threads: CrossEncoderReranker(
            folder, device=device, batch_size=batch or 64
        ),
        "onnx": lambda folder, device, batch, threads: OnnxCrossEncoderReranker(
            folder, precision="fp32", device=device, batch_size=batch or 16, threads=threads
        ),
        "onnx-int8": lambda folder, device, batch, threads: OnnxCrossEncoderReranker(
            folder, precision="int8", device=device, batch_size=batch or 16, threads=threads
        ),
    }
)


def open_reranker(
    folder: str | Path,
    *,
    runtime: str = "torch",
    device: str = "auto",
    batch_size: int | None = None,
    threads: int | None = None,
) -> Reranker:
    """The reranker in ``folder`` served by ``runtime`` (manifests checked now, weights on first use);
    ``threads``: its session's intra-op threads (None: every core)."""
    try:
        factory = RERANKER_RUNTIMES[runtime]
    except KeyError:
        raise BadInputError(
            f"unknown reranker runtime {runtime!r}; choose from {', '.join(RERANKER_RUNTIMES)}"
        ) from None
    return factory(Path(folder), device, batch_size, threads)
