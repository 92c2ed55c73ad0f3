"""``shoprank export --embedder``: the packaged all-MiniLM-L6-v2 bi-encoder as ONNX, fp32 and int8.

The graph is transformer → mean pooling over the attention mask → L2 normalization, i.e. what the
sentence-transformers model computes, so it returns unit vectors directly. fp32 must reproduce the
sentence-transformers vectors on probe texts; int8 (onnxruntime dynamic quantization, per channel)
is only required to stay close in cosine — its ranking cost is measured by ``bench.embedder_onnx``.
Files go to a folder (default ``<cache dir>/onnx/minilm``) with ``tokenizer.json`` and
``export.json`` (source model, dimension, max length, file hashes, probe differences).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from indexer.embedding.embedders import MINILM_ID, SentenceTransformerEmbedder
from indexer.embedding.onnx_embedder import EXPORT_FILE, EXPORT_KIND, PRECISIONS
from indexer.errors import IndexMismatchError
from training.export import INPUT_NAMES, file_entries, onnx_export, quantize_int8, swap_folder

log = logging.getLogger(__name__)

OPSET = 17
PROBES = (
    "Targus Classic 15.6 inch laptop backpack black",
    "usb c cable 2m",
    "HP 305A cyan original LaserJet toner cartridge",
    "Café crème espresso machine, 15 bar, stainless steel",
)
FP32_TOLERANCE = 1e-4
INT8_MIN_COSINE = 0.95


@dataclass(frozen=True)
class EmbedderExport:
    folder: Path
    files: dict[str, dict[str, Any]]
    max_abs_diff: dict[str, float]
    min_cosine: dict[str, float]


def export_bi_encoder(out: str | Path, *, quantize: bool = True, opset: int = OPSET) -> EmbedderExport:
    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer

    st: Any = SentenceTransformer(
        str(SentenceTransformerEmbedder.packaged_model_path()), device="cpu", local_files_only=True
    )
    st.eval()
    transformer: Any = st[0].auto_model
    max_length = int(st.max_seq_length)
    dimension = int(transformer.config.hidden_size)

    class Pooled(torch.nn.Module):
        def __init__(self, m: torch.nn.Module):
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    wrapper = Pooled(transformer).eval()
    enc = st.tokenizer(
        list(PROBES), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    names = INPUT_NAMES
    reference = st.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True)

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fp32 = tmp / PRECISIONS["fp32"]
    log.info("exporting %s to ONNX (opset %d)", MINILM_ID, opset)
    onnx_export(wrapper, enc, fp32, "embeddings", opset)
    files = {"fp32": fp32}
    if quantize:
        files["int8"] = tmp / PRECISIONS["int8"]
        quantize_int8(fp32, files["int8"])
    feed = {n: enc[n].numpy() for n in names}
    diffs, cosines = {}, {}
    for precision, path in files.items():
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        diffs[precision] = float(np.max(np.abs(got - reference)))
        cosines[precision] = float(np.min(np.sum(got * reference, axis=1)))
    if diffs["fp32"] > FP32_TOLERANCE or cosines.get("int8", 1.0) < INT8_MIN_COSINE:
        shutil.rmtree(tmp, ignore_errors=True)
        raise IndexMismatchError(
            f"the ONNX export differs from sentence-transformers (fp32 max |Δ| {diffs['fp32']:.2e}, "
            f"int8 min cosine {cosines.get('int8', 1.0):.4f}); nothing was written"
        )
    st.tokenizer.save_pretrained(str(tmp))  # tokenizer.json for the `tokenizers` runtime
    entries = file_entries(files)
    files_out = {p: {**e, "file": str(out / str(e["file"]))} for p, e in entries.items()}
    manifest = {
        "kind": EXPORT_KIND,
        "source": MINILM_ID,
        "dimension": dimension,
        "max_length": max_length,
        "pooling": "mean over attention mask, L2-normalized",
        "opset": opset,
        "files": entries,
        "probe_max_abs_diff": diffs,
        "probe_min_cosine": cosines,
        "quantization": "onnxruntime quantize_dynamic, QInt8 weights, per channel" if quantize else None,
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (tmp / EXPORT_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    swap_folder(tmp, out)
    return EmbedderExport(out, files_out, diffs, cosines)
