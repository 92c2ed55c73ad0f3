"""Review sentiment: fine-tuned MiniLM vs TF-IDF + logistic regression, same split, same run.

For each language: ``shoprank train sentiment`` logic (80/20 split by product; Chinese has no
product ids, so reviews are split one by one), the baseline fitted on the same training reviews,
both scored on the held-out 20%. English also gets an aspect check on the Hu & Liu annotations:
sentences whose aspect labels sum to a clear sign (|Σ| ≥ 1) are scored by the model, and
accuracy is the share whose predicted sign matches. ``--blend`` also stacks the n-gram head
(:mod:`training.sentiment_blend`) and scores all three on the same test sample; ``--trained DIR``
scores an earlier run's model instead of fine-tuning one. Merges one row per language (with its
run's provenance; languages not run keep theirs) into ``OUT/sentiment.json``, renders ``.md`` from it.

    python -m bench.sentiment --langs en,zh [--max-train-zh 12000] [--epochs 1]
    python -m bench.sentiment --langs zh --trained MODELS/zh --blend --models MODELS
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Run, RunNotes, add_data, add_device, add_out, parser, write_results
from bench.report import table
from indexer.manifest import ModelManifest
from ranker.signals.sentiment import MiniLMSentiment
from training.finetune import TrainConfig
from training.reviews_data import read_hu_liu
from training.sentiment import load_split, train_sentiment
from training.sentiment_blend import blend_sentiment, split_heldout


def aspect_check(model: MiniLMSentiment, data: Path) -> dict[str, float]:
    sentences = []
    for z in sorted((data / "reviews_en" / "hu_liu").glob("product_reviews_*.zip")):
        sentences += [s for s in read_hu_liu(z).items if abs(sum(s.aspects.values())) >= 1]
    if not sentences:
        return {}
    scores = model.score([s.text for s in sentences])
    truth = [sum(s.aspects.values()) > 0 for s in sentences]
    hits = sum((sc > 0) == t for sc, t in zip(scores, truth, strict=True))
    return {
        "sentences": float(len(sentences)),
        "sign_accuracy": hits / len(sentences),
        "positive_share": sum(truth) / len(truth),
    }


def _gain(g: dict | None) -> str:
    return f"{g['delta']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]" if g else "–"


def render(result: dict) -> list[str]:
    """The Markdown report of a ``sentiment.json`` result."""
    rows = result["rows"]
    notes = RunNotes()
    lines = [
        "# Review sentiment: fine-tuned MiniLM vs TF-IDF + logistic regression (same split, same run)",
        "",
        "- `date` is when the row's model finished; `run` names the row's run (footnotes below)",
        "- long reviews keep head + tail up to the row's max length (tokens); `from` names the model a"
        " row's run continued (a further epoch with a fresh schedule)",
        "- stacked: MiniLM + the TF-IDF n-gram head (`shoprank train sentiment-blend`), stacking weights"
        " learnt on the held-out reviews outside the test sample; all columns of a stacked row are"
        " scored on the same test reviews, with a paired bootstrap interval on the accuracy gain",
        "",
        *table(
            [
                "lang",
                "train",
                "test",
                "baseline acc",
                "baseline F1",
                "MiniLM acc",
                "MiniLM F1",
                "steps",
                "train s",
                "max len",
                "lr",
                "from",
                "date",
                "stacked acc",
                "stacked F1",
                "stacked − baseline acc [95%]",
                "run",
            ],
            [
                [
                    r["lang"],
                    r["train"],
                    r["test"],
                    r["baseline_acc"],
                    r["baseline_f1"],
                    r["minilm_acc"],
                    r["minilm_f1"],
                    r["steps"],
                    r["train_s"],
                    r.get("max_length", 128),
                    f"{r['lr']:g}" if "lr" in r else "–",
                    "/".join(Path(r["init_from"]).parts[-2:]) if r.get("init_from") else "base MiniLM",
                    r.get("date", "–")[:16],
                    r.get("blend_acc", "–"),
                    r.get("blend_f1", "–"),
                    _gain(r.get("blend_gain")),
                    notes.mark(r),
                ]
                for r in rows
            ],
            4,
        ),
    ]
    for r in rows:
        if "blend_acc" in r:
            lines += [
                "",
                f"{r['lang']} stacked: n-gram head C = {r['head_C']:g} (chosen by a CV of the stack over the"
                f" {r['dev']} dev reviews, which also learnt the stacking weights); the head alone"
                f" scores {r['head_acc']:.4f} on the test reviews.",
            ]
    en = next((r for r in rows if r["lang"] == "en"), {})
    a = en.get("hu_liu_aspects") or result.get("hu_liu_aspects")
    if a:
        lines += [
            "",
            f"Hu & Liu aspect sentences (|Σ aspect polarity| ≥ 1), scored by the en row's model"
            f" {notes.mark(en)}: {int(a['sentences'])} sentences, sign accuracy {a['sign_accuracy']:.4f}"
            f" (positive share {a['positive_share']:.4f}).",
        ]
    return [*lines, "", *notes.lines()]


def _legacy(tables: dict[str, list[dict[str, Any]]], run: Run, args: Any) -> dict[str, Any]:
    """The older file-level fields (the last run's), and the en row's aspect check at the top."""
    en = next((r for r in tables["rows"] if r["lang"] == "en"), {})
    out: dict[str, Any] = {
        "date": run.date,
        "machine": run.machine,
        "config": {k: str(v) for k, v in vars(args).items()},
    }
    return out | ({"hu_liu_aspects": en["hu_liu_aspects"]} if en.get("hu_liu_aspects") else {})


def main(argv: list[str] | None = None) -> int:
    ap = parser("sentiment", __doc__)
    add_data(ap)
    ap.add_argument("--langs", default="en,zh")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--max-train-en", type=int)
    ap.add_argument("--max-train-zh", type=int, default=12000)
    ap.add_argument("--max-test-zh", type=int, default=4000, help="seeded sample of the Chinese test set")
    ap.add_argument("--seed", type=int, default=13, help="training seed (the split always uses 13)")
    ap.add_argument(
        "--init-from",
        type=Path,
        help="continue from a model an earlier run saved (MODELS-style folder for one language)",
    )
    ap.add_argument(
        "--trained",
        type=Path,
        help="skip fine-tuning: score a model an earlier run saved (one language, its own split seed 13)",
    )
    ap.add_argument(
        "--blend",
        action="store_true",
        help="also stack the n-gram head (weights learnt on the held-out reviews outside the test sample)",
    )
    add_device(ap)
    ap.add_argument("--models", type=Path, default=Path("/tmp/shoprank-sentiment"))
    add_out(ap, "sentiment")
    args = ap.parse_args(argv)
    run = Run.start("sentiment", argv, args)
    rows = []
    for lang in args.langs.split(","):
        train, test = load_split(lang, args.data)
        dev: list = []
        n_test = args.max_test_zh if lang == "zh" and args.max_test_zh else 0
        if args.blend:  # the held-out rows not in the test sample learn the stacking weights
            dev, test = split_heldout(test, n_test if 0 < n_test < len(test) else len(test) // 2)
        elif 0 < n_test < len(test):
            _, test = split_heldout(test, n_test)
        t = time.perf_counter()
        if args.trained is None:
            model_dir = args.models / lang
            rep = train_sentiment(
                train,
                test,
                model_dir,
                TrainConfig(
                    epochs=args.epochs,
                    lr=args.lr,
                    max_length=args.max_length,
                    device=args.device,
                    checkpoint_every=0,
                    seed=args.seed,
                ),
                lang=lang,
                max_train=args.max_train_en if lang == "en" else args.max_train_zh,
                init_from=args.init_from,
                progress=True,
            )
            m, trained = rep.metrics, {"steps": rep.train.steps, "seconds": rep.train.seconds}
            device, lr, max_length, init_from = rep.train.device, args.lr, args.max_length, args.init_from
        else:  # an earlier run's model: its own manifest says how it was trained
            model_dir = args.trained
            man = ModelManifest.load(model_dir, kind="sentiment")
            m, trained = man.metrics["held_out"], man.train_config
            device, lr, max_length = trained.get("device_used", "?"), trained["lr"], man.max_length
            base = Path(man.base_model).parent  # a continued model names the earlier model's model/
            init_from = base if (base / "manifest.json").exists() else None
        row = {
            "lang": lang,
            "train": int(m["train"]["n_train"]),
            "test": int(m["minilm"]["n_test"]),
            "baseline_acc": m["tfidf_logreg"]["accuracy"],
            "baseline_f1": m["tfidf_logreg"]["macro_f1"],
            "minilm_acc": m["minilm"]["accuracy"],
            "minilm_f1": m["minilm"]["macro_f1"],
            "steps": int(trained["steps"]),
            "train_s": float(trained["seconds"]),
            "device": device,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "max_length": max_length,
            "lr": lr,
            "epochs": int(trained.get("epochs", args.epochs)) if args.trained else args.epochs,
            "init_from": str(init_from) if init_from else None,
        }
        if args.blend:
            shutil.rmtree(args.models / f"{lang}-blend", ignore_errors=True)
            b = blend_sentiment(
                model_dir, train, dev, test, args.models / f"{lang}-blend", lang=lang, device=args.device
            )
            row.update(
                test=int(b["blend"]["n_test"]),
                dev=int(b["n_dev"]),
                baseline_acc=b["tfidf_logreg"]["accuracy"],
                baseline_f1=b["tfidf_logreg"]["macro_f1"],
                minilm_acc=b["minilm"]["accuracy"],
                minilm_f1=b["minilm"]["macro_f1"],
                blend_acc=b["blend"]["accuracy"],
                blend_f1=b["blend"]["macro_f1"],
                blend_gain=b["blend_minus_tfidf"],
                head_acc=b["ngram_head"]["accuracy"],
                head_C=b["head_C"]["chosen"],
            )
        row["total_s"] = time.perf_counter() - t
        if lang == "en":
            row["hu_liu_aspects"] = aspect_check(MiniLMSentiment(model_dir, device=args.device), args.data)
        rows.append(row)
    doc = write_results(
        args.out,
        "sentiment",
        rows,
        key=["lang"],
        run=run,
        extra=lambda tables: _legacy(tables, run, args),
        markdown=lambda d: "\n".join(render(d)) + "\n",
    )
    print("\n".join(render(doc)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
