"""``shoprank train reranker|sentiment|sentiment-blend|fusion`` and ``shoprank export``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugin_api.cli.common_cli import common, read_catalog_args, settings_from

if TYPE_CHECKING:
    from plugin_api.settings import Settings


def train_config(args: argparse.Namespace, device: str) -> Any:
    """The fine-tuning settings both `train reranker` and `train sentiment` take from their flags."""
    from training.finetune import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.train_batch_size,
        lr=args.lr,
        max_length=args.max_length,
        seed=args.seed,
        device=device,
        max_steps=args.max_steps,
        layers=getattr(args, "layers", None),
    )


def cmd_train_reranker(args: argparse.Namespace) -> int:
    from plugin_api.backends import open_retriever
    from ranker.evaluation.relevance import load_judgments
    from training.cv import DataPlan, train_with_cv

    s = settings_from(args)
    qrels = load_judgments(args.judgments)
    read = read_catalog_args(args)
    retriever = open_retriever(s)  # the index built from this catalog (`shoprank index`) mines negatives
    plan = DataPlan(
        max_products=args.max_products,
        sources=tuple(x.strip() for x in args.sources.split(",") if x.strip()),
        seed=args.seed,
    )
    cfg = train_config(args, s.device)
    rep = train_with_cv(
        read.products,
        qrels,
        retriever,
        args.out,
        folds=args.folds,
        plan=plan,
        config=cfg,
        candidates=s.rerank_candidates,
        progress=not args.quiet,
    )
    print(
        json.dumps(
            {
                "out": str(rep.out_dir),
                "folds": args.folds,
                "cross_validated": {
                    k: {m: round(v, 4) for m, v in d.items()} for k, d in rep.metrics.items()
                },
                "final_sources": rep.final_sources,
                "seconds": round(rep.seconds, 1),
            }
        )
    )
    return 0


def _data(args: argparse.Namespace) -> Path:
    """``--data``, else the settings' shared data folder (SHOPRANK_SHARED_DATA_DIR)."""
    return Path(args.data) if args.data is not None else settings_from(args).shared_data_dir


def cmd_train_sentiment(args: argparse.Namespace) -> int:
    from training.sentiment import load_split, train_sentiment

    train, test = load_split(args.lang, _data(args), seed=args.split_seed)
    cfg = train_config(args, settings_from(args).device)
    rep = train_sentiment(
        train,
        test,
        args.out,
        cfg,
        lang=args.lang,
        max_train=args.max_train,
        seed=args.seed,
        init_from=args.init_from,
        progress=not args.quiet,
    )
    print(
        json.dumps(
            {
                "out": str(args.out),
                "lang": args.lang,
                "held_out": {k: {m: round(v, 4) for m, v in d.items()} for k, d in rep.metrics.items()},
                "device": rep.train.device,
            }
        )
    )
    return 0


def cmd_train_sentiment_blend(args: argparse.Namespace) -> int:
    from training.sentiment import load_split
    from training.sentiment_blend import blend_sentiment, split_heldout

    train, heldout = load_split(args.lang, _data(args), seed=args.split_seed)
    dev, test = split_heldout(heldout, args.test_size or len(heldout) // 2)
    metrics = blend_sentiment(
        args.model, train, dev, test, args.out, lang=args.lang, device=settings_from(args).device
    )
    print(
        json.dumps(
            {
                "out": str(args.out),
                "lang": args.lang,
                "held_out": {
                    k: {m: round(v, 4) for m, v in d.items()} if isinstance(d, dict) else d
                    for k, d in metrics.items()
                },
            }
        )
    )
    return 0


def ensure_query_runtime(s: Settings) -> None:
    """``query_embedder = "auto"``: export the packaged minilm to ONNX when its export is missing
    (~20 s, once per cache folder; a lock keeps two starting services from exporting at once).
    Without onnxruntime, or when the export fails its probes, queries stay on torch."""
    import fcntl

    from indexer.embedding.onnx_embedder import EXPORT_FILE
    from indexer.errors import ShoprankError
    from plugin_api.backends import auto_query_runtime

    folder = s.onnx_embedder_dir
    if not auto_query_runtime(s) or (folder / EXPORT_FILE).exists():
        return
    try:
        import onnxruntime  # noqa: F401

        from training.export_embedder import export_bi_encoder
    except ImportError as exc:
        print(f"shoprank: queries are embedded with torch ({exc}; install shoprank[onnx])", file=sys.stderr)
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / EXPORT_FILE).exists():  # another process made it meanwhile
            return
        print(f"shoprank: exporting the query embedder to ONNX in {folder} (once)", file=sys.stderr)
        try:
            export_bi_encoder(folder)
        except ShoprankError as exc:
            print(f"shoprank: queries are embedded with torch: {exc}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    from indexer.errors import BadInputError
    from training.export import export_cross_encoder, export_with_folds

    quantize = not args.no_quantize
    if (args.reranker is None) == (not args.export_embedder):
        raise BadInputError("say what to export: --reranker DIR or --embedder (one of them)")
    if args.export_embedder:
        from plugin_api.settings import Settings
        from training.export_embedder import export_bi_encoder

        out = args.out or Settings(**{}).onnx_embedder_dir
        done = export_bi_encoder(out, quantize=quantize)
        print(
            json.dumps(
                {
                    "folder": str(done.folder),
                    "files": {
                        p: {"file": e["file"], "mb": round(e["bytes"] / 1e6, 1)}
                        for p, e in done.files.items()
                    },
                    "probe_max_abs_diff": {p: round(d, 6) for p, d in done.max_abs_diff.items()},
                    "probe_min_cosine": {p: round(d, 5) for p, d in done.min_cosine.items()},
                }
            )
        )
        return 0
    if args.folds:
        reports = export_with_folds(args.reranker, quantize=quantize)
    else:
        reports = [export_cross_encoder(args.reranker, quantize=quantize)]
    for rep in reports:
        print(
            json.dumps(
                {
                    "folder": str(rep.folder),
                    "files": {
                        p: {"file": e["file"], "mb": round(e["bytes"] / 1e6, 1)} for p, e in rep.files.items()
                    },
                    "probe_max_abs_logit_diff": {p: round(d, 5) for p, d in rep.max_abs_diff.items()},
                }
            )
        )
    return 0


def cmd_train_fusion(args: argparse.Namespace) -> int:
    from indexer.errors import BadInputError
    from plugin_api.backends import open_retriever
    from ranker.evaluation.relevance import load_judgments
    from training.fusion import train_fusion_cv

    if args.out is None and args.resource is None:
        raise BadInputError("give --out DIR for fusion.json (or, without --reranker, --resource FILE)")
    if args.resource is not None and args.reranker is not None:
        raise BadInputError("--resource ships the text fusion: drop --reranker (or --resource)")
    s = settings_from(args)
    shared: dict[str, Any] = {
        "candidates": s.rerank_candidates,
        "strict": s.strict_candidates,
        "unjudged_grade": None if args.judged_only else 0.0,
        "features": args.features.split(",") if args.features else None,
        "objective": args.objective,
    }
    qrels, retriever = load_judgments(args.judgments), open_retriever(s)
    if args.reranker is None:
        from training.fusion import ship_text_fusion, train_text_fusion_cv

        rep = train_text_fusion_cv(qrels, retriever, args.out, folds=args.folds, **shared)
        if args.resource is not None:
            ship_text_fusion(rep, args.resource, fusion_provenance(args, s, retriever))
    else:
        rep = train_fusion_cv(
            args.reranker,
            qrels,
            retriever,
            args.out,
            device=s.device,
            runtime=s.reranker_runtime,
            cache_dir=args.cache,
            select=not args.no_select,
            **shared,
        )
    print(
        json.dumps(
            {
                "out": str(args.out / "fusion.json") if args.out is not None else None,
                **({"resource": str(args.resource)} if args.resource is not None else {}),
                "weights": {k: round(v, 4) for k, v in rep.model.weights.items()},
                "feature_set": rep.model.meta.get("feature_set"),
                "cross_validated": {
                    k: {m: round(v, 4) for m, v in d.items()} for k, d in rep.metrics.items()
                },
            }
        )
    )
    return 0


# The settings that change what `train fusion` learns; a re-run sets them as SHOPRANK_* again.
FUSION_SETTINGS = (
    "backend",
    "embedder",
    "candidates",
    "fusion",
    "rrf_k",
    "weight_bm25",
    "weight_vector",
    "rerank_candidates",
    "strict_candidates",
    "device",
)


def fusion_command(args: argparse.Namespace) -> str:
    """The `shoprank train fusion` command line these arguments stand for (the flags that matter)."""
    argv = ["shoprank", "train", "fusion", "--judgments", str(args.judgments), "--folds", str(args.folds)]
    argv += ["--objective", args.objective]
    argv += ["--judged-only"] if args.judged_only else []
    argv += ["--features", args.features] if args.features else []
    for flag in ("--backend", "--opensearch-url", "--index-alias", "--data-dir", "--embedder", "--device"):
        value = getattr(args, flag[2:].replace("-", "_"))
        argv += [flag, str(value)] if value is not None else []
    argv += ["--out", str(args.out)] if args.out is not None else []
    return shlex.join([*argv, "--resource", str(args.resource)])


def fusion_provenance(args: argparse.Namespace, s: Any, retriever: Any) -> dict[str, Any]:
    """Where a shipped text fusion comes from: the command, its settings, the judgments file's
    sha256, the index it ranked (catalog hash, size, embedder), the date and the commit."""
    from indexer.manifest import sha256_file
    from ranker.evaluation.relevance import git_commit

    manifest = retriever.backend.manifest()
    return {
        "command": fusion_command(args),
        "settings": {k: getattr(s, k) for k in FUSION_SETTINGS},
        "judgments": Path(args.judgments).name,
        "judgments_sha256": sha256_file(args.judgments),
        "index": {
            "catalog_hash": manifest.catalog_hash,
            "documents": manifest.documents,
            "model_id": manifest.model_id,
        }
        if manifest is not None
        else None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(Path(__file__).resolve().parents[2]),
    }


def add_train_commands(sub: Any) -> None:
    from ranker.ranking.linear_fusion import OBJECTIVES

    p = sub.add_parser("train", help="fine-tune models (reranker, sentiment) and learn the fusion")
    tsub = p.add_subparsers(dest="model", required=True)
    p = tsub.add_parser(
        "reranker", help="fine-tune the cross-encoder with query-level k-fold CV, then on everything"
    )
    p.add_argument("--catalog", required=True, type=Path, help="the catalog the index was built from")
    p.add_argument("--judgments", required=True, type=Path, help="query,docid,rating CSV")
    p.add_argument(
        "--out", required=True, type=Path, help="folder for the model, its manifest and the fold models"
    )
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--folds", type=int, default=5, help="k for query-level cross-validation (0: no CV)")
    p.add_argument("--max-products", type=int, default=3000, help="products sampled for pseudo-queries")
    p.add_argument(
        "--sources", default="pseudo,judgments,hard_negatives", help="training-data sources to use"
    )
    p.add_argument("--train-batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument(
        "--layers",
        type=int,
        help="keep the base model's bottom N transformer layers (default: all 6); 2 scores ~3x faster",
    )
    p.add_argument("--max-steps", type=int, help="stop each training run after N steps")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    common(p)
    p.set_defaults(func=cmd_train_reranker)

    p = tsub.add_parser("sentiment", help="fine-tune the review-sentiment classifier (en or zh)")
    p.add_argument("--lang", required=True, choices=["en", "zh"])
    p.add_argument(
        "--data",
        type=Path,
        help="the shared data folder holding reviews_en/ and reviews_zh/ "
        "(default SHOPRANK_SHARED_DATA_DIR, or ../shared/data from where the command runs)",
    )
    p.add_argument("--out", required=True, type=Path, help="folder for the model and its manifest")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-train", type=int, help="train on a seeded sample of N reviews")
    p.add_argument(
        "--init-from",
        type=Path,
        help="continue training a model this command saved earlier (same --lang), e.g. for another epoch",
    )
    p.add_argument("--train-batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-steps", type=int, help="stop after N steps")
    p.add_argument("--seed", type=int, default=13, help="training seed (shuffling, sampling, fresh weights)")
    p.add_argument(
        "--split-seed",
        type=int,
        default=13,
        help="seed of the 80/20 train/test split; keep it when continuing with --init-from",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--device", help="auto (default: CUDA when present), cpu or cuda")
    p.set_defaults(func=cmd_train_sentiment)

    p = tsub.add_parser(
        "sentiment-blend",
        help="stack a TF-IDF n-gram head onto a trained sentiment model (weights learnt on held-out reviews)",
    )
    p.add_argument("--model", required=True, type=Path, help="a folder from `shoprank train sentiment`")
    p.add_argument("--lang", required=True, choices=["en", "zh"])
    p.add_argument(
        "--data",
        type=Path,
        help="the shared data folder (default SHOPRANK_SHARED_DATA_DIR, or ../shared/data from here)",
    )
    p.add_argument("--out", required=True, type=Path, help="a new folder for the stacked model")
    p.add_argument(
        "--test-size",
        type=int,
        help="held-out reviews kept for the test (default half); the rest learn the stacking weights",
    )
    p.add_argument("--split-seed", type=int, default=13, help="the 80/20 split the model was trained with")
    p.add_argument("--device", help="auto (default: CUDA when present), cpu or cuda")
    p.set_defaults(func=cmd_train_sentiment_blend)

    p = tsub.add_parser("fusion", help="learn the fusion weights on the reranker's folds, then on everything")
    p.add_argument(
        "--reranker",
        type=Path,
        help="a reranker folder trained with --folds (without it: text features only, own k-fold CV)",
    )
    p.add_argument("--folds", type=int, default=5, help="k for the query-level CV without --reranker")
    p.add_argument("--judgments", required=True, type=Path, help="query,docid,rating CSV")
    p.add_argument("--out", type=Path, help="folder for fusion.json (optional with --resource)")
    p.add_argument(
        "--resource",
        type=Path,
        help="without --reranker: also write the text fusion with its provenance as the resource `full` "
        "ships (ranker/ranking/resources/text_fusion.json)",
    )
    p.add_argument(
        "--judged-only",
        action="store_true",
        help="learn from judged candidates only (default: unjudged candidates count as grade 0)",
    )
    p.add_argument("--features", help="comma-separated features to learn (default: all)")
    p.add_argument(
        "--no-select",
        action="store_true",
        help="keep the cross-encoder even when nested CV finds the fusion better without it",
    )
    p.add_argument(
        "--objective",
        default="listnet",
        choices=list(OBJECTIVES),
        help="learning-to-rank loss: listwise ListNet (default) or pairwise logistic",
    )
    p.add_argument(
        "--reranker-runtime", choices=["torch", "onnx", "onnx-int8"], help="runtime scoring the candidates"
    )
    p.add_argument("--cache", type=Path, help="keep the cross-encoder scores here (reused by later runs)")
    common(p)
    p.set_defaults(func=cmd_train_fusion)

    p = sub.add_parser("export", help="write ONNX (fp32 + int8) versions of the reranker or the bi-encoder")
    p.add_argument("--reranker", type=Path, help="a folder from `shoprank train reranker`")
    p.add_argument(
        "--embedder",
        dest="export_embedder",
        action="store_true",
        help="export the packaged MiniLM bi-encoder (serve it with SHOPRANK_EMBEDDER=minilm-onnx[-int8])",
    )
    p.add_argument(
        "--out", type=Path, help="bi-encoder export folder (default ~/.cache/shoprank/onnx/minilm)"
    )
    p.add_argument("--folds", action="store_true", help="also export its cross-validation fold models")
    p.add_argument("--no-quantize", action="store_true", help="fp32 only")
    p.set_defaults(func=cmd_export)
