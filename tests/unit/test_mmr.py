import math

import numpy as np
import pytest

from indexer.errors import BadInputError
from ranker.ranking.mmr import MMRResult, mmr, mmr_batch, normalize_relevance


def reference_mmr(rel, emb, k, lam):
    """Plain greedy MMR: a double loop over candidates and earlier picks, no vectorization."""
    rel = np.asarray(rel, dtype=np.float64)
    emb = np.asarray(emb, dtype=np.float64)
    unit = [v / max(float(np.linalg.norm(v)), 1e-12) for v in emb]
    selected, scores, penalties, max_sims = [], [], [], []
    for _ in range(min(k, len(rel))):
        best = None
        for i in range(len(rel)):
            if i in selected:
                continue
            ms = 0.0
            if selected:
                ms = max(float(np.dot(unit[i], unit[j])) for j in selected)
            value = lam * rel[i] - (1 - lam) * ms
            if best is None or value > best[1]:  # strict: ties keep the lower index
                best = (i, value, (1 - lam) * ms, ms)
        selected.append(best[0])
        scores.append(best[1])
        penalties.append(best[2])
        max_sims.append(best[3])
    return selected, scores, penalties, max_sims


def random_case(rng, n, d):
    rel = rng.random(n)
    emb = rng.standard_normal((n, d))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return rel, emb


def assert_matches_reference(got: MMRResult, ref, index_map=None):
    order, scores, penalties, max_sims = ref
    if index_map is not None:
        order = [int(index_map[i]) for i in order]
    assert got.order == order
    assert got.mmr_scores == pytest.approx(scores, abs=1e-12)
    assert got.penalties == pytest.approx(penalties, abs=1e-12)
    assert got.max_similarity == pytest.approx(max_sims, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("n", "d", "k"), [(1, 4, 1), (5, 3, 5), (20, 8, 7), (50, 16, 50), (12, 2, 30)])
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_mmr_matches_reference(seed, n, d, k, lam):
    rng = np.random.default_rng(seed * 1000 + n)
    rel, emb = random_case(rng, n, d)
    got = mmr(rel, emb, k, lam, device="cpu")
    assert len(got.order) == min(k, n)
    assert_matches_reference(got, reference_mmr(rel, emb, k, lam))


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.7, 1.0])
def test_mmr_batch_with_mask_matches_reference(seed, lam):
    rng = np.random.default_rng(seed)
    B, n, d, k = 6, 15, 5, 6
    rel = rng.random((B, n))
    emb = rng.standard_normal((B, n, d))
    mask = rng.random((B, n)) < 0.7
    mask[0] = True  # a full row
    mask[1] = False
    mask[1, [2, 9]] = True  # fewer real candidates than k
    mask[2] = False  # no candidates at all
    rel[~mask] = np.nan  # padding may hold anything
    emb[~mask] = np.inf
    results = mmr_batch(rel, emb, k, lam, mask, device="cpu")
    assert len(results) == B
    for b in range(B):
        idx = np.flatnonzero(mask[b])
        ref = reference_mmr(rel[b, idx], emb[b, idx], k, lam)
        assert_matches_reference(results[b], ref, index_map=idx)
    assert results[1].order in ([2, 9], [9, 2])
    assert results[2] == MMRResult([], [], [], [])


def test_mmr_batch_without_mask_equals_single_calls():
    rng = np.random.default_rng(7)
    rel = rng.random((4, 10))
    emb = rng.standard_normal((4, 10, 6))
    batch = mmr_batch(rel, emb, 5, 0.6, device="cpu")
    assert batch == [mmr(rel[b], emb[b], 5, 0.6, device="cpu") for b in range(4)]


def test_torch_inputs_and_auto_device():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    rel, emb = random_case(rng, 25, 12)
    got = mmr(torch.tensor(rel, dtype=torch.float32), torch.tensor(emb, dtype=torch.float32), 8, 0.5)
    ref = reference_mmr(rel.astype(np.float32), emb.astype(np.float32), 8, 0.5)
    assert_matches_reference(got, ref)
    mask = torch.ones((1, 25), dtype=torch.bool)
    again = mmr_batch(torch.tensor(rel)[None], torch.tensor(emb)[None], 8, 0.5, mask)
    assert_matches_reference(again[0], reference_mmr(rel, emb, 8, 0.5))


@pytest.mark.skipif(
    not __import__("importlib").util.find_spec("torch") or not __import__("torch").cuda.is_available(),
    reason="no CUDA device",
)
def test_cuda_matches_reference():
    rng = np.random.default_rng(12)
    rel = rng.random((8, 200))
    emb = rng.standard_normal((8, 200, 64))
    for b, got in enumerate(mmr_batch(rel, emb, 20, 0.5, device="cuda")):
        assert_matches_reference(got, reference_mmr(rel[b], emb[b], 20, 0.5))


@pytest.mark.parametrize("seed", range(5))
def test_lam_one_is_relevance_sort(seed):
    rng = np.random.default_rng(seed)
    rel = rng.integers(0, 4, size=30).astype(float)  # many ties: broken by the lower index
    emb = rng.standard_normal((30, 8))
    got = mmr(rel, emb, 30, 1.0, device="cpu")
    assert got.order == list(np.argsort(-rel, kind="stable"))
    assert got.penalties == [0.0] * 30
    assert got.mmr_scores == sorted(rel.tolist(), reverse=True)


def test_duplicates_are_pushed_down():
    rel = [1.0, 0.95, 0.6]
    emb = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]  # 0 and 1 are the same product twice
    assert mmr(rel, emb, 3, 0.5, device="cpu").order == [0, 2, 1]
    assert mmr(rel, emb, 3, 1.0, device="cpu").order == [0, 1, 2]


def test_hand_computed_three_items():
    rel = [1.0, 0.9, 0.5]
    emb = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]
    got = mmr(rel, emb, 3, 0.5, device="cpu")
    # step 1: 0.5*rel = [0.5, 0.45, 0.25] -> 0
    # step 2: item 1: 0.45 - 0.5*0.8 = 0.05; item 2: 0.25 - 0.5*0.0 = 0.25 -> 2
    # step 3: item 1: max(0.8, 0.6) = 0.8 -> 0.45 - 0.4 = 0.05
    assert got.order == [0, 2, 1]
    assert got.mmr_scores == pytest.approx([0.5, 0.25, 0.05], abs=1e-12)
    assert got.penalties == pytest.approx([0.0, 0.0, 0.4], abs=1e-12)
    assert got.max_similarity == pytest.approx([0.0, 0.0, 0.8], abs=1e-12)
    assert all(isinstance(x, float) for x in got.mmr_scores) and all(isinstance(i, int) for i in got.order)
    # lam = 0: first pick is the lowest index (all objectives 0), then the least similar
    assert mmr(rel, emb, 3, 0.0, device="cpu").order == [0, 2, 1]
    # k is clipped; embeddings are normalized defensively
    scaled = mmr(rel, np.asarray(emb) * 7.0, 10, 0.5, device="cpu")
    assert scaled.order == [0, 2, 1]
    assert scaled.penalties == pytest.approx(got.penalties, abs=1e-12)


def test_zero_candidates():
    assert mmr(np.zeros(0), np.zeros((0, 4)), 5, 0.5, device="cpu") == MMRResult([], [], [], [])
    assert mmr_batch(np.zeros((0, 3)), np.zeros((0, 3, 4)), 5, 0.5, device="cpu") == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": -0.1}, "lam must be in"),
        ({"lam": 1.5}, "lam must be in"),
        ({"lam": math.nan}, "lam must be in"),
        ({"lam": "0.5"}, "lam must be a number"),
        ({"k": 0}, "k must be an integer >= 1"),
        ({"k": 2.5}, "k must be an integer >= 1"),
        ({"k": True}, "k must be an integer >= 1"),
        ({"relevance": [1.0, math.nan, 0.0]}, "NaN"),
        ({"relevance": [1.0, math.inf, 0.0]}, "NaN or infinite"),
        ({"embeddings": [[1.0, 0.0], [math.nan, 1.0], [0.0, 1.0]]}, "NaN"),
        ({"relevance": [1.0, 0.5]}, "matching relevance"),
        ({"embeddings": [1.0, 0.0, 1.0]}, "2-D"),
        ({"relevance": [[1.0, 0.5, 0.2]]}, "1-D"),
        ({"relevance": ["a", "b", "c"]}, "numeric"),
    ],
)
def test_mmr_validation(kwargs, match):
    args = {
        "relevance": [1.0, 0.5, 0.2],
        "embeddings": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
        "k": 2,
        "lam": 0.5,
    }
    args.update(kwargs)
    with pytest.raises(BadInputError, match=match):
        mmr(args["relevance"], args["embeddings"], args["k"], args["lam"], device="cpu")


def test_mmr_batch_validation():
    rel = np.ones((2, 3))
    emb = np.ones((2, 3, 4))
    with pytest.raises(BadInputError, match="mask must have shape"):
        mmr_batch(rel, emb, 2, 0.5, np.ones((2, 4), dtype=bool), device="cpu")
    with pytest.raises(BadInputError, match=r"\[B, n\]"):
        mmr_batch(np.ones(3), emb, 2, 0.5, device="cpu")
    with pytest.raises(BadInputError, match="d >= 1"):
        mmr_batch(rel, np.ones((2, 3, 0)), 2, 0.5, device="cpu")
    with pytest.raises(BadInputError, match="boolean"):
        mmr_batch(rel, emb, 2, 0.5, np.array([["x"] * 3] * 2), device="cpu")


def test_normalize_relevance():
    assert normalize_relevance([2.0, 4.0, 3.0]).tolist() == [0.0, 1.0, 0.5]
    assert normalize_relevance([5.0, 5.0]).tolist() == [1.0, 1.0]
    assert normalize_relevance([[1.0, 3.0], [7.0, 7.0]]).tolist() == [[0.0, 1.0], [1.0, 1.0]]
    assert normalize_relevance([]).tolist() == []
    with pytest.raises(BadInputError, match="NaN"):
        normalize_relevance([1.0, math.nan])
    with pytest.raises(BadInputError, match="1-D"):
        normalize_relevance(3.0)
