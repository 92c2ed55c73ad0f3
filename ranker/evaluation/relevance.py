"""Offline relevance evaluation: judgments CSV → runs per pipeline → metrics (via ranx) + report.

Metrics (``unjudged = 0`` unless noted), averaged over the queries that have at least one
relevant judgment (rating > 0):

* ``ndcg@10`` — ranx nDCG (linear gain), unjudged products count as irrelevant;
* ``ndcg_condensed@10`` — the same after removing unjudged products from each ranking;
* ``judged@10`` — share of the top 10 that carries a judgment (tells how far to trust the above);
* ``mrr@10``, ``recall@100`` — ranx, relevant = rating >= 1.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.errors import BadInputError

log = logging.getLogger(__name__)

METRICS = ("ndcg@10", "ndcg_condensed@10", "judged@10", "mrr@10", "recall@100")
DIVERSITY = ("ild@10", "distinct_brands@10")
RUN_DEPTH = 100

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


def load_judgments(path: str | Path) -> Qrels:
    """Read a ``query,docid,rating`` CSV (ratings are non-negative integers)."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"judgments file not found: {p} (expected a CSV with columns query,docid,rating)")
    qrels: Qrels = {}
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"query", "docid", "rating"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise BadInputError(f"{p}: header must have columns query,docid,rating (got {reader.fieldnames})")
        for row in reader:
            q = (row["query"] or "").strip()
            if not q:
                raise BadInputError(f"{p}:{reader.line_num}: empty query")
            try:
                rating = int(float(row["rating"]))
            except (TypeError, ValueError):
                raise BadInputError(
                    f"{p}:{reader.line_num}: rating must be an integer, got {row['rating']!r}"
                ) from None
            if rating < 0:
                raise BadInputError(f"{p}:{reader.line_num}: rating must be >= 0, got {rating}")
            qrels.setdefault(q, {})[str(row["docid"]).strip()] = rating
    if not qrels:
        raise BadInputError(f"{p} has no judgments")
    return qrels


def judged_at(run: Run, qrels: Qrels, k: int = 10) -> dict[str, float]:
    """Per query: the share of the top k that is judged (any rating)."""
    out = {}
    for q, docs in run.items():
        top = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        out[q] = sum(1 for d, _ in top if d in qrels.get(q, {})) / k if top else 0.0
    return out


def condense(run: Run, qrels: Qrels) -> Run:
    return {q: {d: s for d, s in docs.items() if d in qrels.get(q, {})} for q, docs in run.items()}


def compute_metrics(run: Run, qrels: Qrels) -> dict[str, float]:
    """Mean metrics over the queries of ``qrels`` that have a relevant judgment."""
    try:
        from ranx import Qrels as RQrels
        from ranx import Run as RRun
        from ranx import evaluate
    except ImportError as exc:
        raise BadInputError("offline evaluation needs ranx: pip install 'shoprank[eval]'") from exc

    evaluable = {q: d for q, d in qrels.items() if any(r > 0 for r in d.values())}
    if not evaluable:
        raise BadInputError("no query in the judgments has a relevant product (rating > 0)")
    full = {q: (run.get(q) or {}) for q in evaluable}
    rq = RQrels(evaluable)

    def _eval(r: Run, metrics: list[str]) -> dict[str, float]:
        # ranx rejects empty rankings: a query with no results gets a dummy unjudged entry (scores 0).
        safe = {q: (docs if docs else {"__none__": 0.0}) for q, docs in r.items()}
        res = evaluate(rq, RRun(safe), metrics, make_comparable=True)
        return {m: float(res[m]) for m in metrics} if isinstance(res, dict) else {metrics[0]: float(res)}

    out = _eval(full, ["ndcg@10", "mrr@10", "recall@100"])
    out["ndcg_condensed@10"] = _eval(condense(full, evaluable), ["ndcg@10"])["ndcg@10"]
    out["judged@10"] = float(np.mean(list(judged_at(full, evaluable).values())))
    return out


@dataclass
class PipelineResult:
    name: str
    metrics: dict[str, float]
    latencies_ms: list[float]
    run: Run

    def summary(self, queries: int) -> dict[str, float | int]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            **{m: round(self.metrics[m], 4) for m in METRICS},
            **{m: round(self.metrics[m], 4) for m in DIVERSITY if m in self.metrics},
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 2),
            "queries": queries,
        }


DiversityLookup = Callable[[Sequence[str]], tuple[np.ndarray, Sequence[str]]]


def diversity_at(run: Run, lookup: DiversityLookup, k: int = 10) -> dict[str, float]:
    """Mean intra-list diversity and distinct brands over each query's top k.

    ``lookup(ids)`` returns the products' embeddings (rows in id order) and brands.
    """
    from ranker.evaluation.diversity import diversity_metrics

    rows = []
    for docs in run.values():
        top = [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
        if top:
            emb, brands = lookup(top)
            rows.append(diversity_metrics(emb, list(brands), k=k))
    if not rows:
        return {}
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def evaluate_pipelines(
    qrels: Qrels,
    pipelines: Mapping[str, Callable[[str], Sequence[tuple[str, float]]]],
    *,
    progress: bool = False,
    diversity: DiversityLookup | None = None,
) -> dict[str, PipelineResult]:
    """Run every query through every pipeline (a function query → ranked (id, score) list).

    With ``diversity``, the metrics also carry ``ild@10`` and ``distinct_brands@10``.
    """
    results = {}
    queries = sorted(qrels)
    for name, fn in pipelines.items():
        run: Run = {}
        lat: list[float] = []
        it = queries
        if progress:
            from tqdm import tqdm

            it = tqdm(queries, desc=f"eval {name}", unit="q")
        for q in it:
            t = time.perf_counter()
            ranked = fn(q)
            lat.append((time.perf_counter() - t) * 1000.0)
            # Scores become strictly decreasing by rank so ties cannot reorder anything.
            run[q] = {doc: float(len(ranked) - i) for i, (doc, _) in enumerate(ranked)}
        metrics = compute_metrics(run, qrels)
        if diversity is not None:
            metrics.update(diversity_at(run, diversity))
        results[name] = PipelineResult(name, metrics, lat, run)
    return results


def write_outputs(
    out_dir: str | Path, results: Mapping[str, PipelineResult], qrels: Qrels, context: Mapping[str, object]
) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = sum(1 for d in qrels.values() if any(r > 0 for r in d.values()))
    metrics = {name: r.summary(n) for name, r in results.items()}
    mpath = out / "metrics.json"
    mpath.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "context.json").write_text(
        json.dumps(dict(context), indent=2, default=str) + "\n", encoding="utf-8"
    )
    rpath = out / "report.md"
    cols = [*METRICS, *(d for d in DIVERSITY if any(d in m for m in metrics.values()))]
    lines = [
        "# shoprank offline evaluation",
        "",
        f"- judgments: {context.get('judgments')} ({len(qrels)} queries, {n} with a relevant product)",
        f"- catalog: {context.get('catalog')}; backend: {context.get('backend')}; model: {context.get('model_id')}",
        f"- machine: {context.get('machine', machine_description())}",
        "- nDCG@10 counts unjudged products as irrelevant; condensed nDCG drops them; judged@10 is the judged share",
        "",
        "| pipeline | " + " | ".join(cols) + " | p50 ms | p95 ms | queries |",
        "|---" * (len(cols) + 4) + "|",
    ]
    for name, m in metrics.items():
        cells = [f"{m[k]:.4f}" if k in m else "–" for k in cols] + [
            f"{m['latency_ms_p50']:.1f}",
            f"{m['latency_ms_p95']:.1f}",
            str(m["queries"]),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        lines += write_comparison(out, results, qrels)
    rpath.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return mpath, rpath


def write_comparison(out: Path, results: Mapping[str, PipelineResult], qrels: Qrels) -> list[str]:
    """Every pipeline against the first one: nDCG@10 difference with a 95% paired bootstrap
    interval over the queries, written to ``comparison.json``; returns the report's lines."""
    from ranker.evaluation.significance import paired_bootstrap, per_query_ndcg

    names = list(results)
    base = per_query_ndcg(results[names[0]].run, qrels)
    rows = {n: paired_bootstrap(base, per_query_ndcg(results[n].run, qrels)) for n in names[1:]}
    (out / "comparison.json").write_text(
        json.dumps(
            {"baseline": names[0], "metric": "ndcg@10", "vs": {n: c.as_dict() for n, c in rows.items()}},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    lines = [
        "",
        f"nDCG@10 against `{names[0]}`, per query, 95% paired bootstrap interval (10,000 resamples of the queries):",
        "",
        "| pipeline | Δ nDCG@10 | 95% interval | better / worse / tied queries |",
        "|---|---|---|---|",
    ]
    for n, c in rows.items():
        lines.append(
            f"| {n} | {c.delta:+.4f} | [{c.low:+.4f}, {c.high:+.4f}] | {c.wins} / {c.losses} / {c.ties} |"
        )
    return lines


def git_commit(repo: str | Path) -> str:
    """``repo``'s short HEAD, with ``-dirty`` when tracked files differ from it; ``unknown``
    outside a git checkout (an installed package). Results and shipped models record it."""
    import subprocess

    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *cmd], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head, dirty = (
            git("rev-parse", "--short", "HEAD"),
            git("status", "--porcelain", "--untracked-files=no"),
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def machine_description() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = "GPU " + torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"CPU {cpu} × {os.cpu_count()} cores, {gpu}"
