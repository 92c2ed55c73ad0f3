"""Learn the fusion weights with the reranker's query-level folds, then on everything.

The fusion layer is stacked on the cross-encoder, so it must learn from cross-encoder scores the
cross-encoder did not fit: fold i's model was trained on the judgments of every query outside fold
i, so its scores on those queries are over-confident, and a fusion fitted on them trusts the
cross-encoder far more than it deserves on unseen queries. Each query's candidates are therefore
scored by the fold model that held that query out (out-of-fold scores). For fold i the fusion is
fitted on the out-of-fold candidates of the queries outside fold i (unjudged candidates count as
grade 0, as the evaluation counts them) and ranks fold i's queries, scored by fold i's model, which
never saw them. The shipped fusion is fitted on the out-of-fold candidates of all queries and runs
beside the shipped cross-encoder. Writes ``<out>/fusion.json`` with the cross-validated metrics.
(The fold-i fusion sees scores of fold models that trained on fold i's judgments, on other
queries: a second-order leak that full nesting would remove at k times the training cost.)

The feature set is cross-validated too (:func:`cross_validate_fusion`): with and without the
cross-encoder, chosen inside each fold's training queries. Without a reranker,
:func:`train_text_fusion_cv` learns the text features with its own query-level folds.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from indexer.errors import BadInputError, IndexMismatchError
from indexer.manifest import ModelManifest
from ranker.base import Hit, Reranker, SearchRequest
from ranker.evaluation.relevance import RUN_DEPTH, Qrels, Run, compute_metrics
from ranker.evaluation.significance import per_query_ndcg
from ranker.ranking.features import FEATURES, feature_matrix
from ranker.ranking.linear_fusion import LinearFusion, fit_fusion
from ranker.rerank.cross_encoder import KIND as CE_KIND
from ranker.rerank.registry import open_reranker
from ranker.rerank.stage import with_cross_encoder
from ranker.retrieval.retriever import STRICT_CANDIDATES, Retriever
from training.folds import kfold_queries

log = logging.getLogger(__name__)


@dataclass
class FusionReport:
    model: LinearFusion
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    folds: list[dict[str, Any]] = field(default_factory=list)


Candidates = dict[str, list[Hit]]


def score_candidates(
    queries: Sequence[str],
    retriever: Retriever,
    reranker: Reranker | None,
    candidates: int,
    strict: int = STRICT_CANDIDATES,
) -> Candidates:
    """Per query: the first stage's top ``candidates`` plus the strict keyword leg's top ``strict``
    (with products; as :class:`~ranker.ranking.full.FullPipeline` gathers them), each with its
    cross-encoder score (none when ``reranker`` is None). The expensive part of fusion training,
    done once per reranker."""
    out: Candidates = {}
    for q in queries:
        result = retriever.search(SearchRequest(q, k=candidates), strict=strict)
        hits = [h for h in result.hits if h.product is not None]
        out[q] = with_cross_encoder(reranker, q, hits) if hits and reranker is not None else hits
    return out


def fold_candidates(
    reranker_dir: Path,
    fold: int | None,
    queries: Sequence[str],
    retriever: Retriever,
    candidates: int,
    *,
    runtime: str = "torch",
    device: str = "auto",
    cache_dir: Path | None = None,
    strict: int = STRICT_CANDIDATES,
) -> Candidates:
    """:func:`score_candidates` with fold ``fold``'s model (None: the shipped model), cached in
    ``cache_dir`` (when given) under the model name, fold, depth and runtime, so fusion training
    and the fusion benchmark score each (model, query set) once."""
    name = ModelManifest.load(reranker_dir, kind=CE_KIND).name
    folder = reranker_dir if fold is None else reranker_dir / "folds" / f"fold-{fold}"
    if not folder.exists():
        raise IndexMismatchError(f"{folder} is missing; retrain the reranker with --folds")
    path = None
    if cache_dir is not None:
        tag = "final" if fold is None else f"fold{fold}"
        path = cache_dir / f"{name}-{tag}-n{candidates}-s{strict}-{runtime}.pkl"
        if path.exists():
            cached: Candidates = pickle.loads(path.read_bytes())
            if set(queries) <= set(cached):
                return cached
    reranker = open_reranker(folder, runtime=runtime, device=device)
    cands = score_candidates(queries, retriever, reranker, candidates, strict)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(cands))
        tmp.replace(path)
    return cands


def groups_from(
    cands: Candidates, qrels: Qrels, queries: Sequence[str], unjudged_grade: float | None = 0.0
) -> list[tuple[np.ndarray, list[float]]]:
    """Per query: the candidates' features and grades. Unjudged candidates take ``unjudged_grade``
    (the evaluation counts them as not relevant, so 0 trains for the metric), or are left out
    when it is None. Queries whose candidates all share one grade teach nothing and are skipped."""
    groups = []
    for q in queries:
        judged = qrels.get(q, {})
        keep = [h for h in cands.get(q, []) if h.id in judged or unjudged_grade is not None]
        grades = [float(judged.get(h.id, unjudged_grade or 0.0)) for h in keep]
        if len(set(grades)) >= 2:
            groups.append((feature_matrix(keep, query=q), grades))
    return groups


def ranked_run(cands: Candidates, queries: Sequence[str], fusion: LinearFusion) -> Run:
    """The ``full`` pipeline's order without diversity (λ = 1): candidates by fused score."""
    run: Run = {}
    for q in queries:
        hits = cands.get(q, [])
        if not hits:
            continue
        scores = fusion.score(feature_matrix(hits, query=q))
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))[:RUN_DEPTH]
        run[q] = {hits[i].id: float(len(order) - r) for r, i in enumerate(order)}
    return run


def out_of_fold(fold_cands: dict[int, Candidates], folds: Sequence[dict[str, Any]]) -> Candidates:
    """Per query: the candidates as scored by the fold model that held the query out."""
    out: Candidates = {}
    for f in folds:
        cands = fold_cands[f["fold"]]
        for q in f["test_queries"]:
            if q in cands:
                out[q] = cands[q]
    return out


def feature_sets(features: Sequence[str] | None, select: bool) -> dict[str, tuple[str, ...]]:
    """The candidate feature sets: the requested ones (default all) and, with ``select``, the same
    without the cross-encoder."""
    base = tuple(features) if features else FEATURES
    sets = {"requested": base}
    if select and "cross_encoder" in base and len(base) > 1:
        sets["without cross_encoder"] = tuple(f for f in base if f != "cross_encoder")
    return sets


@dataclass
class FusionCV:
    held_out: Run  # each fold's test queries ranked by that fold's fusion
    folds: list[dict[str, Any]]  # per fold: weights, feature set, inner scores
    fold_models: dict[int, LinearFusion]
    final: LinearFusion  # fitted on every query with the winning feature set
    feature_set: str
    set_scores: dict[str, float]  # cross-validated nDCG@10 per feature set (empty: no choice)
    feature_sets: dict[str, tuple[str, ...]]


def cross_validate_fusion(
    fold_cands: dict[int, Candidates],
    folds_spec: Sequence[dict[str, Any]],
    qrels: Qrels,
    *,
    objective: str = "listnet",
    unjudged_grade: float | None = 0.0,
    features: Sequence[str] | None = None,
    select: bool = True,
) -> FusionCV:
    """The fusion's cross-validation on already scored candidates (``fold_cands[i]``: fold i's
    cross-encoder over every query), learning from out-of-fold scores; with ``select``, the
    feature set is chosen by nested CV (see :func:`train_fusion_cv`)."""
    queries = sorted(qrels)
    oof = out_of_fold(fold_cands, folds_spec)
    # Each query's training group once (features over its out-of-fold candidates).
    group_of = {q: groups_from(oof, qrels, [q], unjudged_grade) for q in queries}
    sets = feature_sets(features, select)

    def fit(train_q: Sequence[str], feats: Sequence[str]) -> LinearFusion:
        return fit_fusion(objective, [g for q in train_q for g in group_of[q]], features=feats)

    def cv_ndcg(pool: Sequence[str], feats: Sequence[str]) -> float:
        """Mean held-out nDCG@10 over ``pool`` with the reranker's folds restricted to it."""
        held: Run = {}
        for f in folds_spec:
            test = set(f["test_queries"])
            test_q = [q for q in pool if q in test]
            train_q = [q for q in pool if q not in test]
            if test_q and any(group_of[q] for q in train_q):
                held.update(ranked_run(fold_cands[f["fold"]], test_q, fit(train_q, feats)))
        per_q = per_query_ndcg(held, {q: qrels[q] for q in pool})
        return float(np.mean(list(per_q.values()))) if per_q else 0.0

    def choose(pool: Sequence[str]) -> tuple[str, dict[str, float]]:
        if len(sets) == 1:
            return next(iter(sets)), {}
        scores = {name: cv_ndcg(pool, feats) for name, feats in sets.items()}
        return max(scores, key=lambda n: (scores[n], n == next(iter(sets)))), scores

    held_out: Run = {}
    folds = []
    fold_models: dict[int, LinearFusion] = {}
    for f in folds_spec:
        test = set(f["test_queries"])
        test_q = [q for q in queries if q in test]
        train_q = [q for q in queries if q not in test]
        # Nested: the feature set is chosen on this fold's training queries only.
        chosen, inner = choose(train_q)
        model = fit(train_q, sets[chosen])
        fold_models[f["fold"]] = model
        held_out.update(ranked_run(fold_cands[f["fold"]], test_q, model))
        folds.append(
            {
                "fold": f["fold"],
                "weights": dict(model.weights),
                "test_queries": len(test_q),
                "feature_set": chosen,
                **({"inner_ndcg@10": {k: round(v, 4) for k, v in inner.items()}} if inner else {}),
            }
        )
        log.info(
            "fusion fold %s (%s): weights %s",
            f["fold"],
            chosen,
            {k: round(v, 3) for k, v in model.weights.items()},
        )
    chosen, overall = choose(queries)
    return FusionCV(held_out, folds, fold_models, fit(queries, sets[chosen]), chosen, overall, sets)


def save_fusion(cv: FusionCV, qrels: Qrels, out: str | Path | None, meta: dict[str, Any]) -> FusionReport:
    """Write ``out/fusion.json`` (``out`` None: nothing written): the final weights, ``meta``, the
    held-out metrics and the folds."""
    metrics = {"full": compute_metrics(cv.held_out, qrels)} if cv.held_out else {}
    model = LinearFusion(
        cv.final.weights,
        cv.final.bias,
        {**dict(cv.final.meta), **meta, "cross_validated": metrics, "folds": cv.folds},
    )
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        model.save(folder / "fusion.json")
    return FusionReport(model, metrics, cv.folds)


TEXT_FEATURES = (
    "retrieval",
    "bm25",
    "vector",
    "title_coverage",
    "field_coverage",
    "brand_in_query",
    "all_terms",
    "strict_match",
)


def train_text_fusion_cv(
    qrels: Qrels,
    retriever: Retriever,
    out: str | Path | None,
    *,
    candidates: int = 100,
    strict: int = STRICT_CANDIDATES,
    folds: int = 5,
    seed: int = 13,
    unjudged_grade: float | None = 0.0,
    features: Sequence[str] | None = None,
    objective: str = "listnet",
) -> FusionReport:
    """Fusion without a cross-encoder: the first stage's top ``candidates`` per query, weights
    learned by query-level k-fold (near-duplicate queries stay on one side,
    :func:`~training.folds.kfold_queries`) over the text features (default :data:`TEXT_FEATURES`),
    then fitted on every query. For a shop with judgments but no trained reranker; the fusion
    ``full`` ships for that case is this one on the dev judgments (:func:`ship_text_fusion`)."""
    feats = tuple(features) if features else TEXT_FEATURES
    if "cross_encoder" in feats:
        raise BadInputError(
            "fusion without --reranker cannot learn a cross_encoder weight; drop it from --features"
        )
    queries = sorted(qrels)
    try:
        splits = kfold_queries(queries, k=folds, seed=seed)
    except ValueError as exc:
        raise BadInputError(f"{exc}; use fewer --folds or more judged queries") from None
    spec: list[dict[str, Any]] = [{"fold": i, "test_queries": test} for i, (_, test) in enumerate(splits)]
    cands = score_candidates(queries, retriever, None, candidates, strict)
    cv = cross_validate_fusion(
        {i: cands for i in range(len(spec))},
        spec,
        qrels,
        objective=objective,
        unjudged_grade=unjudged_grade,
        features=feats,
        select=False,
    )
    return save_fusion(
        cv,
        qrels,
        out,
        {
            "reranker": None,
            "feature_set": "text (no reranker)",
            "unjudged_grade": unjudged_grade,
            "candidates": candidates,
            "strict_candidates": strict,
        },
    )


# How closely a re-run of the recorded `train fusion` command must reproduce the shipped text
# fusion (tests/unit/test_shipped_fusion.py): per weight, and on the held-out nDCG@10. The fit is
# deterministic; the slack is for query embeddings computed on another CPU or BLAS build.
RETRAIN_TOLERANCE = MappingProxyType({"weight": 0.01, "ndcg@10": 0.002})


def ship_text_fusion(report: FusionReport, path: str | Path, provenance: dict[str, Any]) -> LinearFusion:
    """Write the learned text fusion as the resource ``full`` uses without a cross-encoder
    (:func:`ranker.ranking.shipped.text_fusion`): the weights as learned (shop signals at 0; the
    loader adds the hand-set ones), the training meta, and ``meta.provenance`` (the command, the
    judgments' sha256, date, commit, held-out figures and :data:`RETRAIN_TOLERANCE`)."""
    meta = dict(report.model.meta)
    if meta.get("reranker") is not None or report.model.weights.get("cross_encoder", 0.0) != 0.0:
        raise BadInputError("only a fusion trained without --reranker can ship as the text fusion")
    held_out = report.metrics.get("full", {})
    shipped = LinearFusion(
        report.model.weights,
        report.model.bias,
        {
            **meta,
            "provenance": {
                **provenance,
                "held_out": {k: round(v, 4) for k, v in held_out.items()},
                "tolerance": dict(RETRAIN_TOLERANCE),
            },
        },
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    shipped.save(path)
    return shipped


def train_fusion_cv(
    reranker_dir: str | Path,
    qrels: Qrels,
    retriever: Retriever,
    out: str | Path,
    *,
    candidates: int = 100,
    strict: int = STRICT_CANDIDATES,
    device: str = "auto",
    unjudged_grade: float | None = 0.0,
    features: Sequence[str] | None = None,
    runtime: str = "torch",
    cache_dir: str | Path | None = None,
    objective: str = "listnet",
    select: bool = True,
) -> FusionReport:
    """Cross-validated fusion over the reranker's folds; see the module docstring.

    With ``select``, the feature set is itself chosen by cross-validation: the requested features
    and the same without the cross-encoder compete, nested inside each outer fold (so the reported
    held-out metrics include the choice), and the shipped model uses the set that wins over all
    queries. A fusion that weighs the cross-encoder 0 lets ``full`` skip it at serving time.
    """
    reranker_dir = Path(reranker_dir)
    manifest = ModelManifest.load(reranker_dir, kind=CE_KIND)
    if not manifest.folds:
        raise IndexMismatchError(
            f"{reranker_dir} has no fold models; fusion learns from out-of-fold cross-encoder "
            "scores: retrain the reranker with --folds 5"
        )
    cache = None if cache_dir is None else Path(cache_dir)
    queries = sorted(qrels)
    fold_cands = {
        f["fold"]: fold_candidates(
            reranker_dir,
            f["fold"],
            queries,
            retriever,
            candidates,
            runtime=runtime,
            device=device,
            cache_dir=cache,
            strict=strict,
        )
        for f in manifest.folds
    }
    cv = cross_validate_fusion(
        fold_cands,
        manifest.folds,
        qrels,
        objective=objective,
        unjudged_grade=unjudged_grade,
        features=features,
        select=select,
    )
    return save_fusion(
        cv,
        qrels,
        out,
        {
            "reranker": manifest.name,
            "unjudged_grade": unjudged_grade,
            "candidates": candidates,
            "strict_candidates": strict,
            "runtime": runtime,
            "stacking": "out-of-fold cross-encoder scores",
            "feature_set": cv.feature_set,
            "feature_sets": {k: list(v) for k, v in cv.feature_sets.items()},
            **(
                {"feature_set_cv_ndcg@10": {k: round(v, 4) for k, v in cv.set_scores.items()}}
                if cv.set_scores
                else {}
            ),
        },
    )
