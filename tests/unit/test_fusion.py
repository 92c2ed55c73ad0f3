import pytest

from indexer.errors import BadInputError
from ranker.base import Scored
from ranker.retrieval.fusion import Fusion, minmax, rrf


def S(*pairs):
    return [Scored(i, s) for i, s in pairs]


def test_rrf_hand_computed():
    lists = {"bm25": S(("a", 9.0), ("b", 5.0), ("c", 1.0)), "vector": S(("c", 0.9), ("a", 0.8), ("d", 0.1))}
    got = {s.id: s.score for s in rrf(lists, k=60)}
    assert got["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert got["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert got["b"] == pytest.approx(1 / 62)
    assert got["d"] == pytest.approx(1 / 63)
    assert [s.id for s in rrf(lists, k=60)] == ["a", "c", "b", "d"]


def test_rrf_weights_and_zero_weight():
    lists = {"bm25": S(("a", 1.0)), "vector": S(("b", 1.0))}
    assert [s.id for s in rrf(lists, weights={"bm25": 1.0, "vector": 2.0})] == ["b", "a"]
    assert [s.id for s in rrf(lists, weights={"bm25": 1.0, "vector": 0.0})] == ["a"]
    with pytest.raises(BadInputError):
        rrf(lists, k=0)


def test_minmax_hand_computed():
    lists = {"bm25": S(("a", 10.0), ("b", 6.0), ("c", 2.0)), "vector": S(("c", 0.9), ("d", 0.5))}
    got = {s.id: s.score for s in minmax(lists, weights={"bm25": 0.3, "vector": 0.7})}
    assert got == pytest.approx({"a": 0.3, "b": 0.3 * 0.5, "c": 0.0 + 0.7, "d": 0.0})
    single = minmax({"bm25": S(("x", 3.0), ("y", 3.0))})
    assert {s.id: s.score for s in single} == {"x": 1.0, "y": 1.0}


def test_fusion_parse():
    assert Fusion.parse("minmax") is Fusion.MINMAX
    with pytest.raises(BadInputError, match="choose from rrf, minmax"):
        Fusion.parse("borda")
