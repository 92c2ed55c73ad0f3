import math

import numpy as np
import pytest

from indexer.errors import BadInputError
from ranker.evaluation.diversity import distinct_count, diversity_metrics, intra_list_diversity


def test_intra_list_diversity_hand_computed():
    # pairs: (0,1) 1 - 0 = 1; (0,2) 1 - 1 = 0; (1,2) 1 - 0 = 1 -> mean 2/3
    assert intra_list_diversity([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]) == pytest.approx(2 / 3)
    assert intra_list_diversity([[2.0, 0.0], [0.0, 3.0]]) == pytest.approx(1.0)  # normalized first
    assert intra_list_diversity([[1.0, 0.0], [-1.0, 0.0]]) == pytest.approx(2.0)
    # cos(45 deg) = sqrt(2)/2
    assert intra_list_diversity([[1.0, 0.0], [1.0, 1.0]]) == pytest.approx(1 - math.sqrt(2) / 2)
    assert intra_list_diversity([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]) == pytest.approx(0.0)


def test_intra_list_diversity_short_lists():
    assert intra_list_diversity([[1.0, 0.0]]) == 0.0
    assert intra_list_diversity(np.zeros((0, 4))) == 0.0
    assert intra_list_diversity([]) == 0.0


def test_distinct_count():
    assert distinct_count(["Apple", "apple ", "SAMSUNG", None, "", "  ", "Sony", "samsung"]) == 3
    assert distinct_count([]) == 0
    assert distinct_count([None, ""]) == 0


def test_diversity_metrics_uses_first_k():
    emb = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    brands = ["Acme", "ACME", None, "Other"]
    got = diversity_metrics(emb, brands, k=3)
    assert got == {"ild@3": pytest.approx(2 / 3), "distinct_brands@3": 1}
    default = diversity_metrics(emb, brands)
    # all 4 pairs-wise: 6 pairs, 4 orthogonal (distance 1), 2 identical (distance 0)
    assert default == {"ild@10": pytest.approx(4 / 6), "distinct_brands@10": 2}
    twelve = diversity_metrics(np.eye(12), [f"b{i}" for i in range(12)])
    assert twelve == {"ild@10": pytest.approx(1.0), "distinct_brands@10": 10}


def test_diversity_validation():
    with pytest.raises(BadInputError, match="same ranked items"):
        diversity_metrics([[1.0, 0.0]], ["a", "b"])
    with pytest.raises(BadInputError, match="k must be"):
        diversity_metrics([[1.0, 0.0]], ["a"], k=0)
    with pytest.raises(BadInputError, match="NaN"):
        intra_list_diversity([[1.0, math.nan], [0.0, 1.0]])
    with pytest.raises(BadInputError, match="2-D"):
        intra_list_diversity([1.0, 0.0])
