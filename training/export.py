"""``shoprank export``: ONNX versions of a trained cross-encoder, fp32 and int8 (dynamic quantization).

The fp32 graph comes from ``torch.onnx.export`` of the fine-tuned model (logits; the sigmoid is
applied by the runtime wrapper, as the torch path does); the int8 graph is onnxruntime's dynamic
quantization of it (weights int8 per channel, activations quantized on the fly) - the usual
choice for transformer encoders on CPU. Files land in ``<model>/onnx/`` with ``export.json``
(source model name, file hashes, opset, versions), which the ONNX reranker checks at load.
Reference outputs on a few probe pairs are compared before anything is written as finished.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import IndexMismatchError
from indexer.manifest import ModelManifest, sha256_file
from ranker.rerank.cross_encoder import KIND
from ranker.rerank.onnx_cross_encoder import EXPORT_DIR, EXPORT_FILE, EXPORT_KIND, PRECISIONS

log = logging.getLogger(__name__)

OPSET = 17
PROBES = (
    ("usb c cable 2m", "Belkin USB-C to USB-C cable 2 m | brand Belkin | Cables"),
    ("laptop bag 15 inch", "Targus Classic 15.6 inch laptop backpack black"),
    ("hp toner", "HP 305A cyan original LaserJet toner cartridge | brand HP"),
)
# fp32 ONNX must reproduce torch; int8 is allowed to move logits a little (ranking is measured).
FP32_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ExportReport:
    folder: Path
    files: dict[str, dict[str, Any]]
    max_abs_diff: dict[str, float]


INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def onnx_export(module: Any, inputs: dict[str, Any], path: Path, output: str, opset: int) -> None:
    """Trace ``module(input_ids, attention_mask, token_type_ids)`` to ``path`` with dynamic batch
    and sequence axes (the TorchScript exporter; the dynamo one needs onnxscript)."""
    import torch

    with warnings.catch_warnings():
        # The tracer notes that attention-mask branches become constants: true for every input
        # shape here (a mask is always given), and checked by the probe comparisons.
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            module,
            tuple(inputs[n] for n in INPUT_NAMES),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[output],
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES}, output: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )


def quantize_int8(fp32: Path, int8: Path) -> None:
    """onnxruntime dynamic quantization: int8 weights per channel, activations on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("quantizing to int8 (dynamic, per channel)")
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)


def file_entries(files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {
        p: {"file": f.name, "sha256": sha256_file(f), "bytes": f.stat().st_size} for p, f in files.items()
    }


def swap_folder(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``tmp`` (the old folder is removed only after the swap)."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def export_cross_encoder(folder: str | Path, *, quantize: bool = True, opset: int = OPSET) -> ExportReport:
    """Export the cross-encoder in ``folder`` to ``folder/onnx`` (replacing an older export)."""
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    manifest = ModelManifest.load(folder, kind=KIND)
    model_dir = folder / "model"
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True)
    model.eval()

    class Logits(torch.nn.Module):
        def __init__(self, m: torch.nn.Module):
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).logits

    wrapper = Logits(model).eval()
    enc = tokenizer(
        list(PROBES),
        padding=True,
        truncation="longest_first",
        max_length=manifest.max_length,
        return_tensors="pt",
    )
    names = INPUT_NAMES
    with torch.no_grad():
        reference = wrapper(*(enc[n] for n in names)).numpy().reshape(-1)

    tmp = folder / (EXPORT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fp32 = tmp / PRECISIONS["fp32"]
    log.info("exporting %s to ONNX (opset %d)", manifest.name, opset)
    onnx_export(wrapper, enc, fp32, "logits", opset)
    files = {"fp32": fp32}
    if quantize:
        files["int8"] = tmp / PRECISIONS["int8"]
        quantize_int8(fp32, files["int8"])
    feed = {n: enc[n].numpy() for n in names}
    diffs = {}
    for precision, path in files.items():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = np.asarray(session.run(None, feed)[0]).reshape(-1)
        diffs[precision] = float(np.max(np.abs(got - reference)))
    if diffs["fp32"] > FP32_TOLERANCE:
        shutil.rmtree(tmp, ignore_errors=True)
        raise IndexMismatchError(
            f"the ONNX export of {manifest.name} differs from torch by {diffs['fp32']:.2e} "
            f"(> {FP32_TOLERANCE}); nothing was written"
        )
    entries = file_entries(files)
    export = {
        "kind": EXPORT_KIND,
        "source": manifest.name,
        "source_data_hash": manifest.data_hash,
        "max_length": manifest.max_length,
        "opset": opset,
        "files": entries,
        "probe_max_abs_logit_diff": diffs,
        "quantization": "onnxruntime quantize_dynamic, QInt8 weights, per channel" if quantize else None,
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (tmp / EXPORT_FILE).write_text(json.dumps(export, indent=2, sort_keys=True), encoding="utf-8")
    out = folder / EXPORT_DIR
    swap_folder(tmp, out)
    return ExportReport(out, {p: {**e, "file": str(out / e["file"])} for p, e in entries.items()}, diffs)


def export_with_folds(folder: str | Path, *, quantize: bool = True) -> list[ExportReport]:
    """Export the model in ``folder`` and every cross-validation fold model under ``folder/folds``."""
    folder = Path(folder)
    reports = [export_cross_encoder(folder, quantize=quantize)]
    for fold in sorted((folder / "folds").glob("fold-*")) if (folder / "folds").exists() else []:
        reports.append(export_cross_encoder(fold, quantize=quantize))
    return reports
