"""Shopper-style query variants: one edit of each kind, first letter kept, prefixes cut by rule."""

from __future__ import annotations

import pytest

from ranker.evaluation.typed_variants import NEIGHBOURS, PREFIX_CUTS, TYPO_KINDS, prefix, typo, variants


def _osa(a: str, b: str) -> int:
    """Optimal string alignment distance (adjacent transposition = 1), a reference implementation."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


QUERIES = ["wireless headphones", "brother tn-2110 toner", "laptop case", "ssd", "iphone 11", "usb stick"]


@pytest.mark.parametrize("kind", TYPO_KINDS)
@pytest.mark.parametrize("query", QUERIES)
def test_a_typo_is_one_edit_of_its_kind_in_the_longest_word(query, kind):
    typed = typo(query, kind)
    if max(len(w) for w in query.replace("-", " ").split()) < 4:
        assert typed is None  # nothing long enough to mistype
        return
    assert typed is not None and typed != query
    longest = max(query.split(), key=len)
    changed = [(a, b) for a, b in zip(query.split(), typed.split(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0][0] == longest
    word, edited = changed[0]
    assert _osa(word, edited) == 1 and edited[0] == word[0]
    assert {"deletion": -1, "insertion": 1}.get(kind, 0) == len(edited) - len(word)
    if kind == "substitution":
        i = next(i for i, (a, b) in enumerate(zip(word, edited, strict=True)) if a != b)
        assert edited[i] in NEIGHBOURS[word[i]]
    assert typo(query, kind) == typed  # deterministic


def test_the_keyboard_neighbours_are_the_adjacent_keys():
    assert set(NEIGHBOURS["g"]) == set("ftyhbv")
    assert set(NEIGHBOURS["q"]) == set("wa")
    assert all(c in NEIGHBOURS[n] for c, ns in NEIGHBOURS.items() for n in ns)  # symmetric


def test_prefixes_cut_the_last_word_keeping_at_least_one_letter():
    assert prefix("laptop case", 0.5) == "laptop ca"
    assert prefix("headphones", 0.34) == "hea"
    assert prefix("tv", 0.5) is None and prefix("ssd", 0.34) == "s"
    assert prefix("ssd", 0.67) == "ss"  # never the whole word
    with pytest.raises(ValueError, match="choose from"):
        typo("x", "swap")


def test_variants_list_every_kind_once_per_query():
    vs = variants(["laptop case", "tv"])
    assert [v.kind for v in vs] == [*TYPO_KINDS, *(f"prefix-{c:.2f}" for c in PREFIX_CUTS)]
    assert {v.clean for v in vs} == {"laptop case"}
