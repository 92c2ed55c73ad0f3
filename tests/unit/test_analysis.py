import pytest

from indexer.analysis import Synonyms, analyze, analyze_query, minimal_english_stem


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        # Expected values follow Lucene's EnglishMinimalStemmer rules.
        ("batteries", "battery"),
        ("televisions", "television"),
        ("series", "sery"),
        ("glasses", "glasse"),
        ("bus", "bus"),
        ("class", "class"),
        ("shoes", "shoes"),
        ("cables", "cable"),
        ("is", "is"),
        ("aies", "aies"),
        ("toys", "toy"),
        ("boxes", "boxe"),
        ("laptop", "laptop"),
        ("eies", "eies"),
    ],
)
def test_minimal_english_stemmer(word, stem):
    assert minimal_english_stem(word) == stem


def test_analyze_folds_case_accents_possessives_and_keeps_numbers():
    assert analyze("Café CRÈME De'Longhi's Batteries 43.2 cm dv7-1211ea") == [
        "cafe",
        "creme",
        "de'longhi",
        "battery",
        "43.2",
        "cm",
        "dv7",
        "1211ea",
    ]


def test_query_synonyms_expand_both_ways_and_multiword():
    syn = Synonyms.parse("laptop, notebook\nusb stick, usb flash drive  # comment\n")
    assert analyze_query("cheap laptops", syn) == ["cheap", "laptop", "notebook"]
    assert analyze_query("notebook", syn) == ["notebook", "laptop"]
    assert analyze_query("usb sticks", syn) == ["usb", "stick", "usb", "flash", "drive"]
    assert syn.rules() == ["laptop, notebook", "usb stick, usb flash drive"]


def test_default_synonyms_load():
    rules = Synonyms.default().rules()
    assert "laptop, notebook" in rules and all("," in r for r in rules)


def test_the_ascii_fast_path_folds_exactly_as_the_unicode_path():
    """``fold`` skips normalization for ASCII text; checked against the full chain on every
    printable ASCII character and on random ASCII strings."""
    import random
    import string
    import unicodedata

    from indexer.analysis import _FOLD, fold

    def reference(text: str) -> str:
        decomposed = unicodedata.normalize("NFD", text.lower()).translate(_FOLD)
        return "".join(
            " " if unicodedata.category(c) == "No" else c for c in decomposed if not unicodedata.combining(c)
        )

    rng = random.Random(7)
    samples = [string.printable, *("".join(rng.choices(string.printable, k=40)) for _ in range(500))]
    for text in samples:
        assert fold(text) == reference(text)
    assert fold("Café ½ ÆON") == reference("Café ½ ÆON") == "cafe   aeon"
