import json
from dataclasses import replace

import numpy as np
import pytest

from indexer.embedded.store import EmbeddedStore
from indexer.embedding.embedders import HashingEmbedder
from indexer.errors import BadInputError, IndexMismatchError
from indexer.pipeline import build_index
from ranker.base import Hit, SearchOptions, SearchRequest, SourceScore
from ranker.ranking.features import FEATURES, ProductSignals, feature_matrix
from ranker.ranking.full import FullPipeline
from ranker.ranking.linear_fusion import LinearFusion, fit_pairwise
from ranker.retrieval.embedded import EmbeddedBackend
from ranker.retrieval.retriever import STRICT_CANDIDATES, Retriever

EMB = HashingEmbedder(dimension=32)


class CheapFirst:
    name = "cheap"

    def score(self, query, products):
        return np.asarray([1.0 / (1.0 + (p.price or 0.0) / 100) for p in products], dtype=np.float32)


@pytest.fixture(scope="module")
def retriever(tmp_path_factory, fixture_products):
    store = EmbeddedStore(tmp_path_factory.mktemp("idx"))
    build_index(fixture_products, store, EMB)
    return Retriever(EmbeddedBackend(store), EMB)


def _signals(ids):
    return {
        "p16": ProductSignals(sentiment=0.8, review_count=200, rating=4.6),
        "p17": ProductSignals(sentiment=-0.5),
    }


def test_explanation_sums_to_the_score(retriever):
    pipe = FullPipeline(retriever, CheapFirst(), candidates=20, signals=_signals)
    res = pipe.search(SearchRequest("printer", k=5), SearchOptions(explain=True, diversity=0.3))
    assert len(res.hits) == 5
    for h in res.hits:
        e = h.explanation
        assert sum(e["contributions"].values()) == pytest.approx(h.score, abs=1e-9)
        assert e["relevance"] == pytest.approx(h.score)
        assert set(e["features"]) == set(FEATURES) and "cross_encoder" in h.sources
    assert res.hits[0].explanation["mmr"]["penalty"] == 0.0
    assert any(h.explanation["mmr"]["penalty"] != 0.0 for h in res.hits[1:])
    by_id = {h.id: h.explanation for h in res.hits}
    if "p16" in by_id:
        assert by_id["p16"]["features"]["sentiment"] == pytest.approx(0.8)
        assert by_id["p16"]["features"]["rating"] == pytest.approx(0.8)


def test_no_diversity_is_relevance_order_and_overrides_apply(retriever):
    pipe = FullPipeline(retriever, CheapFirst(), candidates=20)
    res = pipe.search(SearchRequest("wireless", k=6), SearchOptions(explain=True))
    scores = [h.score for h in res.hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h.explanation["mmr"]["penalty"] == 0.0 for h in res.hits)
    only_bm25 = {f: 0.0 for f in FEATURES} | {"bm25": 1.0}
    res2 = pipe.search(SearchRequest("wireless", k=6), SearchOptions(weights=only_bm25))
    bm25 = retriever.search(SearchRequest("wireless", k=20))
    best = max(bm25.hits, key=lambda h: h.sources["bm25"].score)
    assert res2.hits[0].id == best.id


def test_a_fusion_without_the_cross_encoder_does_not_run_it(retriever):
    class Counting(CheapFirst):
        calls = 0

        def score(self, query, products):
            Counting.calls += 1
            return super().score(query, products)

    no_ce = LinearFusion({"bm25": 1.0, "vector": 1.0})
    pipe = FullPipeline(retriever, Counting(), no_ce, candidates=10)
    res = pipe.search(SearchRequest("wireless", k=3), SearchOptions(explain=True))
    assert res.hits and Counting.calls == 0 and "rerank" not in res.timings_ms
    assert all(h.explanation["features"]["cross_encoder"] == 0.0 for h in res.hits)
    # a per-request weight turns it back on
    res = pipe.search(SearchRequest("wireless", k=3), SearchOptions(weights={"cross_encoder": 1.0}))
    assert Counting.calls == 1 and "rerank" in res.timings_ms


def test_the_cross_encoder_reads_only_the_first_pass_top_m(retriever):
    """With ``rerank_top`` M the cross-encoder scores the M candidates the fusion ranks first
    without it; the others keep its feature 0 and no cross-encoder source, the explanation still
    sums to the score, and M at least the pool is the same as scoring every candidate."""

    class Recording(CheapFirst):
        def __init__(self):
            self.seen = []

        def score(self, query, products):
            self.seen.append([p.id for p in products])
            return super().score(query, products)

    fusion = LinearFusion({"cross_encoder": 1.0, "bm25": 0.5, "title_coverage": 0.3})
    req, opts = SearchRequest("wireless", k=5), SearchOptions(explain=True)
    every = Recording()
    whole = FullPipeline(retriever, every, fusion, candidates=20).search(req, opts)
    assert len(every.seen[0]) > 3
    some = Recording()
    res = FullPipeline(retriever, some, fusion, candidates=20, rerank_top=3).search(req, opts)
    assert len(some.seen) == 1 and len(some.seen[0]) == 3
    # the three it read are the first pass's top three: the fusion with the cross-encoder at 0
    first = retriever.search(replace(req, k=20), strict=STRICT_CANDIDATES)
    pool = [h for h in first.hits if h.product is not None]
    x = feature_matrix(pool, query=req.query)
    order = sorted(range(len(pool)), key=lambda i: (-fusion.score(x)[i], i))
    assert some.seen[0] == [pool[i].id for i in order[:3]]
    for h in res.hits:
        assert sum(h.explanation["contributions"].values()) == pytest.approx(h.score, abs=1e-9)
        assert ("cross_encoder" in h.sources) == (h.id in some.seen[0])
    at_least_pool = Recording()
    same = FullPipeline(retriever, at_least_pool, fusion, candidates=20, rerank_top=1000).search(req, opts)
    assert [(h.id, h.score) for h in same.hits] == [(h.id, h.score) for h in whole.hits]
    with pytest.raises(BadInputError, match="rerank_top"):
        FullPipeline(retriever, CheapFirst(), fusion, rerank_top=0)


def test_cached_cross_encoder_scores_are_the_models_and_are_keyed_by_the_text_it_reads():
    from dataclasses import replace as dc_replace

    from indexer.product import Product
    from ranker.rerank.cache import CachedReranker

    class Counting(CheapFirst):
        def __init__(self):
            self.pairs = 0

        def score(self, query, products):
            self.pairs += len(products)
            return super().score(query, products)

    inner = Counting()
    cached = CachedReranker(inner, 100)
    products = [Product(f"c{i}", f"cable {i}", price=float(10 * i)) for i in range(5)]
    want = CheapFirst().score("cable", products)
    assert cached.name == "cheap"
    assert cached.score("cable", products).tolist() == pytest.approx(want.tolist())
    assert cached.score("cable", products).tolist() == pytest.approx(want.tolist())
    assert inner.pairs == 5  # the second time from the cache
    cached.score("usb cable", products[:2])
    assert inner.pairs == 7  # another query: scored anew
    retitled = dc_replace(products[0], title="cable 0 braided")
    cached.score("cable", [retitled, *products[1:]])
    assert inner.pairs == 8  # only the product whose text changed


def test_feature_sets_for_selection():
    from training.fusion import feature_sets

    assert feature_sets(None, False) == {"requested": FEATURES}
    sets = feature_sets(None, True)
    assert sets["requested"] == FEATURES and "cross_encoder" not in sets["without cross_encoder"]
    assert len(sets["without cross_encoder"]) == len(FEATURES) - 1
    assert feature_sets(["bm25", "vector"], True) == {"requested": ("bm25", "vector")}  # nothing to drop
    assert feature_sets(["cross_encoder"], True) == {"requested": ("cross_encoder",)}


def test_missing_signals_and_reranker_degrade_gracefully(retriever):
    pipe = FullPipeline(retriever, None, candidates=10)
    res = pipe.search(SearchRequest("speaker", k=3), SearchOptions(explain=True))
    assert res.hits
    for h in res.hits:
        f = h.explanation["features"]
        assert f["cross_encoder"] == f["sentiment"] == f["popularity"] == f["personal_affinity"] == 0.0
    with pytest.raises(BadInputError, match="diversity"):
        SearchOptions(diversity=1.5)


def test_feature_scaling():
    h = Hit("a", 1.0, 1, {"bm25": SourceScore(5.0, 1), "vector": SourceScore(0.4, 2)})
    g = Hit("b", 0.5, 2, {"bm25": SourceScore(1.0, 2), "vector": SourceScore(None, None)})
    x = feature_matrix([h, g], signals={"a": ProductSignals(review_count=1000, rating=5.0, sentiment=3.0)})
    row = dict(zip(FEATURES, x[0], strict=True))
    assert (
        row["bm25"] == 1.0
        and row["vector"] == pytest.approx(0.4)
        and row["review_count"] == pytest.approx(1.0)
    )
    assert row["rating"] == 1.0 and row["sentiment"] == 1.0  # clipped
    assert dict(zip(FEATURES, x[1], strict=True))["bm25"] == 0.0 and x[1][FEATURES.index("vector")] == 0.0


def test_pairwise_fit_learns_the_informative_feature():
    rng = np.random.default_rng(0)
    groups = []
    for _ in range(40):
        x = rng.uniform(0, 1, (12, len(FEATURES)))
        grades = np.round(3 * x[:, FEATURES.index("cross_encoder")] + 0.2 * rng.normal(size=12))
        groups.append((x, grades))
    model = fit_pairwise(groups)
    w = model.weights
    assert max(w, key=lambda f: w[f]) == "cross_encoder" and w["cross_encoder"] > 5 * abs(w["bm25"])
    with pytest.raises(BadInputError, match="different grades"):
        fit_pairwise([(np.zeros((3, len(FEATURES))), [1, 1, 1])])


def test_fusion_model_roundtrip_and_mismatch(tmp_path):
    m = LinearFusion({"bm25": 0.5, "cross_encoder": 1.0}, 0.1)
    m.save(tmp_path / "f.json")
    assert LinearFusion.load(tmp_path / "f.json") == m
    data = json.loads((tmp_path / "f.json").read_text())
    (tmp_path / "g.json").write_text(json.dumps({**data, "features": ["bm25", "clicks"]}))
    with pytest.raises(IndexMismatchError, match="retrain"):
        LinearFusion.load(tmp_path / "g.json")
    # A model saved before features were added still loads; the new features weigh 0.
    older = [f for f in FEATURES if f not in ("title_coverage", "field_coverage", "brand_in_query")]
    (tmp_path / "h.json").write_text(json.dumps({**data, "features": older}))
    loaded = LinearFusion.load(tmp_path / "h.json")
    assert loaded.weights == m.weights and loaded.vector()[FEATURES.index("title_coverage")] == 0.0
    with pytest.raises(BadInputError, match="unknown fusion feature"):
        LinearFusion({"clicks": 1.0})


def test_retrieval_feature_is_the_first_stage_dcg_discount():
    hits = [Hit(i, 1.0, r, {}) for i, r in (("a", 1), ("b", 3), ("c", 0))]
    col = FEATURES.index("retrieval")
    x = feature_matrix(hits)
    assert x[0, col] == 1.0 and x[1, col] == pytest.approx(0.5) and x[2, col] == 0.0  # 1/log2(4); no rank


def test_pairwise_fit_can_be_restricted_to_some_features():
    rng = np.random.default_rng(1)
    groups = []
    for _ in range(30):
        x = rng.uniform(0, 1, (10, len(FEATURES)))
        grades = np.round(3 * x[:, FEATURES.index("cross_encoder")])
        groups.append((x, grades))
    model = fit_pairwise(groups, features=["bm25", "vector"])
    assert model.weights["cross_encoder"] == 0.0 and model.meta["features"] == ["bm25", "vector"]
    assert all(model.weights[f] == 0.0 for f in FEATURES if f not in ("bm25", "vector"))
    with pytest.raises(BadInputError, match="choose from retrieval, bm25"):
        fit_pairwise(groups, features=["clicks"])


def test_fusion_groups_count_unjudged_candidates_as_zero_or_leave_them_out():
    from training.fusion import groups_from, ranked_run

    cands = {
        "q": [
            Hit(i, 1.0, r, {"cross_encoder": SourceScore(s, r)})
            for i, r, s in (("a", 1, 0.2), ("b", 2, 0.9), ("c", 3, 0.5))
        ]
    }
    qrels = {"q": {"a": 2, "c": 0}}
    ((x0, g0),) = groups_from(cands, qrels, ["q"], 0.0)
    assert g0 == [2.0, 0.0, 0.0] and x0.shape == (3, len(FEATURES))
    ((x1, g1),) = groups_from(cands, qrels, ["q"], None)
    assert g1 == [2.0, 0.0] and x1.shape == (2, len(FEATURES))
    assert groups_from(cands, {"q": {"a": 1}}, ["q"], None) == []  # one grade: nothing to learn
    only_ce = LinearFusion({"cross_encoder": 1.0})
    assert list(ranked_run(cands, ["q"], only_ce)["q"]) == ["b", "c", "a"]


def test_fusion_learns_from_out_of_fold_scores():
    """Each query's candidates come from the fold model that held the query out."""
    from training.fusion import out_of_fold

    def cands(score: float) -> dict[str, list[Hit]]:
        return {q: [Hit("p", 1.0, 1, {"cross_encoder": SourceScore(score, 1)})] for q in ("q1", "q2", "q3")}

    folds = [{"fold": 0, "test_queries": ["q1", "q3"]}, {"fold": 1, "test_queries": ["q2", "unscored"]}]
    oof = out_of_fold({0: cands(0.1), 1: cands(0.7)}, folds)
    assert {q: hs[0].sources["cross_encoder"].score for q, hs in oof.items()} == {
        "q1": 0.1,
        "q3": 0.1,
        "q2": 0.7,
    }


def test_cross_validated_fusion_keeps_an_informative_cross_encoder():
    """Nested selection: with grades that only the cross-encoder explains, every fold and the
    final model keep it; the held-out run covers every query once."""
    from training.fusion import cross_validate_fusion

    rng = np.random.default_rng(7)
    queries = [f"q{i}" for i in range(20)]
    ce = {q: rng.uniform(0, 1, 8) for q in queries}
    noise = {q: rng.uniform(0, 1, 8) for q in queries}
    qrels = {q: {f"{q}-{j}": int(round(3 * ce[q][j])) for j in range(8)} for q in queries}

    def cands(shift: float) -> dict[str, list[Hit]]:
        return {
            q: [
                Hit(
                    f"{q}-{j}",
                    1.0,
                    j + 1,
                    {
                        "cross_encoder": SourceScore(float(ce[q][j]) + shift, j + 1),
                        "bm25": SourceScore(float(noise[q][j]), j + 1),
                    },
                )
                for j in range(8)
            ]
            for q in queries
        }

    folds = [{"fold": 0, "test_queries": queries[:10]}, {"fold": 1, "test_queries": queries[10:]}]
    cv = cross_validate_fusion({0: cands(0.0), 1: cands(0.01)}, folds, qrels)
    assert set(cv.held_out) == set(queries) and set(cv.fold_models) == {0, 1}
    assert (
        cv.feature_set == "requested" and cv.set_scores["requested"] > cv.set_scores["without cross_encoder"]
    )
    assert all(f["feature_set"] == "requested" for f in cv.folds) and cv.final.weights["cross_encoder"] > 0
    fixed = cross_validate_fusion(
        {0: cands(0.0), 1: cands(0.01)}, folds, qrels, features=["bm25"], select=True
    )
    assert fixed.feature_set == "requested" and fixed.set_scores == {}  # nothing to choose between


def test_strict_keyword_candidates_join_the_pool_and_can_win(retriever):
    # Weigh only "the strict keyword leg found it": the products holding "black" that the hybrid
    # top 3 lacks (rank 0, retrieval feature 0) must come up.
    fusion = LinearFusion({"strict_match": 1.0})
    pipe = FullPipeline(retriever, None, fusion, candidates=3, strict_candidates=20)
    res = pipe.search(SearchRequest("black", k=6), SearchOptions(explain=True))
    feats = [h.explanation["features"] for h in res.hits]
    assert all(f["strict_match"] == 1.0 and f["all_terms"] == 1.0 for f in feats)
    assert any(f["retrieval"] == 0.0 for f in feats)  # brought by the strict leg alone
    none = FullPipeline(retriever, None, fusion, candidates=3, strict_candidates=0)
    res0 = none.search(SearchRequest("black", k=6), SearchOptions(explain=True))
    assert len(res0.hits) == 6 and all(h.explanation["features"]["retrieval"] > 0 for h in res0.hits)
    with pytest.raises(BadInputError, match="strict candidates"):
        FullPipeline(retriever, None, fusion, strict_candidates=-1)
