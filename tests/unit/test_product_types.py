"""Product types (ranker.query.types): the title slot, heads, query intent, the type_match feature
and the classifier's held-out accuracy, on a fixture catalog written the way Icecat titles read."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from indexer.analysis import analyze
from indexer.product import Product
from ranker.base import Hit, SourceScore, TypeIntent
from ranker.query.lexicon import Lexicon
from ranker.query.rewrite import QueryRewriter
from ranker.query.types import TypeModel, holdout, title_slot, type_heads, type_match, type_precision
from ranker.ranking.features import FEATURES, feature_matrix

BRANDS = ["Acme", "Zenit", "Orbo", "Kappa"]
# (type slot, words other products of that type use) — the last word of each slot is its head
TYPES = {
    "toner cartridge": "Original Black 1 pc(s) 2500 pages",
    "printer drum": "Original 12000 pages imaging",
    "inkjet printer": "Colour 4800 x 1200 DPI A4 Wi-Fi",
    "notebook case": '39.6 cm (15.6") Sleeve case Black',
    "mobile phone case": '15.5 cm (6.1") Cover Transparent',
    "networking cable": "2 m Cat6 U/UTP (UTP) Blue",
}


def _catalog() -> list[tuple[str, str]]:
    docs = []
    for (slot, tail), (b, brand), n in itertools.product(TYPES.items(), enumerate(BRANDS), range(4)):
        docs.append((f"{brand} X{b}{n}{len(slot)} {slot} {tail}", ""))
    # products Icecat typed itself (attr_t_product_type), whose titles capitalise the type
    docs += [
        (f'{brand} Book {n} Notebook Silver 35.6 cm (14") 8 GB', "Notebook")
        for brand in BRANDS
        for n in (1, 2)
    ]
    return docs


@pytest.fixture(scope="module")
def model() -> TypeModel:
    return TypeModel.fit(_catalog())


@pytest.mark.parametrize(
    ("title", "slot"),
    [
        ("OKI 42918914 toner cartridge Original Magenta 1 pc(s)", "toner cartridge"),
        ("HP 302 black ink cartridge", "ink cartridge"),  # a colour after the model is a variant
        ("ACT FB6601 networking cable 1 m Cat6a", "networking cable"),  # digits in the model are fine
        ('Lenovo IdeaPad 330 Notebook White 39.6 cm (15.6") 1366 x 768 pixels 8th gen', None),  # units
        ("Jan van Haasteren Cruise Ship 1000 pieces", None),  # right after the brand: a name
        ('Targus 15.6" Crave Laptop Slipcase notebook case 39.6 cm', "notebook case"),
        ("Xerox Transfer Belt (100,000 pages*)", None),
    ],
)
def test_the_title_slot_is_icecats_lower_case_category(title, slot):
    assert title_slot(title) == slot


def test_heads_are_the_last_word_and_each_slashed_alternative():
    assert type_heads("power adapter/inverter") == {"adapter", "inverter"}
    assert type_heads("Headphones") == {"headphone"}
    assert type_heads("") == frozenset()


def test_every_product_is_typed_by_its_category_its_slot_or_the_classifier(model):
    assert model.product_types("Acme X00 toner cartridge Original Black", "") == {"toner cartridge"}
    # Icecat's own product type counts as a type, written in lower case
    assert "notebook" in model.product_types('Acme Book 1 Notebook Silver 35.6 cm (14") 8 GB', "Notebook")
    # no slot, no category: a known phrase in the title, any case
    assert model.product_types("Zenit Mega Networking Cable 3 m", "") == {"networking cable"}
    # nothing names a type: the classifier reads the rest of the title
    assert model.product_types("Kappa Z9 Original 12000 pages imaging unit", "") == {"printer drum"}


def test_the_classifier_types_held_out_products_it_did_not_learn_from():
    docs = _catalog()
    result = holdout(docs, share=0.3, seed=1)
    assert result.products >= 20
    assert result.types >= len(TYPES)
    assert result.accuracy >= 0.9, result
    assert 0.0 < result.coverage <= 1.0


def test_a_refresh_of_the_same_catalog_reuses_the_fitted_model(model):
    assert TypeModel.fit(_catalog(), previous=model) is model
    changed = [*_catalog(), ("Orbo Q1 inkjet printer Colour A4", "")]
    assert TypeModel.fit(changed, previous=model) is not model


@pytest.mark.parametrize(
    ("query", "head", "best"),
    [
        ("printer", "printer", ("inkjet printer",)),
        ("printer drum", "drum", ("printer drum",)),  # the last word is the type asked for
        ("laptop case", "case", ("notebook case", "mobile phone case")),
        ("phone case", "case", ("mobile phone case",)),  # the type sharing most words first
    ],
)
def test_the_query_asks_for_the_type_its_last_word_heads(model, query, head, best):
    intent = model.query_intent(analyze(query))
    assert intent is not None and intent.head == head
    assert intent.phrases[: len(best)] == best or set(intent.phrases) == set(best)


@pytest.mark.parametrize("query", ["cable printer ink", "acme", "blue", ""])
def test_a_query_whose_last_word_names_no_type_has_no_intent(model, query):
    assert model.query_intent(analyze(query)) is None


def test_a_word_that_mostly_names_other_types_heads_none():
    # 30 computer cases, 2 handheld computers: "computer" heads a type, but titles holding it
    # are mostly of another type, so a query ending in it asks for no type
    docs = [(f"Acme C{n}0 computer case Black", "") for n in range(30)]
    docs += [(f"Zenit H{n}0 Handheld Computer 4 GB", "Handheld computer") for n in range(2)]
    docs += [(f"Orbo T{n}0 Tablet 8 GB", "Tablet") for n in range(3)]
    types = TypeModel.fit(docs, classifier=False)
    assert "computer" in types.heads and types.head_share["computer"] == pytest.approx(2 / 32)
    assert types.query_intent(analyze("computer")) is None
    assert types.head_share["tablet"] == 1.0 and types.query_intent(analyze("tablet")) is not None


def test_type_match_rewards_the_named_type_and_spares_related_ones():
    printer = TypeIntent("printer", frozenset({"printer"}))
    assert type_match(printer, {"inkjet printer"}) == 1.0
    assert type_match(printer, {"printer drum"}) == 0.0  # related: shares a word
    assert type_match(printer, {"networking cable"}) == -1.0
    assert type_match(printer, set()) == 0.0  # untyped product
    assert type_match(None, {"inkjet printer"}) == 0.0  # the query names no type
    assert type_precision(printer, [{"inkjet printer"}, {"printer drum"}, set(), {"printer"}]) == 0.5
    assert type_precision(None, [{"inkjet printer"}]) is None


def test_two_type_phrases_back_to_back_name_the_type_their_categorised_products_carry():
    # Icecat titles "… Notebook PC" name a notebook (its categorised ones say so), while
    # "… Camera Battery" names a battery: the second phrase heads unless the categories disagree
    docs = [(f"HP NB{n}0 Notebook PC", "Notebook") for n in range(3)]
    docs += [(f"HP NB{n}5 Notebook PC", "") for n in range(4)]
    docs += [(f"Acme D{n}0 PC", "PC") for n in range(2)] + [
        (f"Acme N{n}0 Notebook", "Notebook") for n in range(2)
    ]
    docs += [(f"Acme C{n}0 Camera", "Camera") for n in range(3)] + [("Acme B00 Camera Battery", "Battery")]
    docs += [(f"Acme B{n}5 Camera Battery", "") for n in range(3)]
    model = TypeModel.fit(docs, classifier=False)
    assert model.product_types("HP NB05 Notebook PC") == {"notebook"}
    assert model.product_types("HP NB99 Notebook PC") == {"notebook"}  # a product it never saw
    assert model.product_types("Acme B05 Camera Battery") == {"battery"}
    assert model.product_types("Acme D00 PC") == {"pc"}
    notebook = model.query_intent(["notebook"])
    assert type_match(notebook, model.product_types("HP NB05 Notebook PC")) == 1.0
    # too few categorised products to overrule the head: the second phrase names the type
    few = TypeModel.fit(docs[1:], classifier=False)  # 2 categorised "Notebook PC"s, not 3
    assert few.product_types("HP NB99 Notebook PC") == {"pc"}


def test_a_type_intent_is_checked():
    with pytest.raises(ValueError):
        TypeIntent("printer", frozenset({"cable"}))


def _hit(i: int, title: str) -> Hit:
    return Hit(
        id=str(i),
        score=1.0,
        rank=i + 1,
        sources={"bm25": SourceScore(1.0, i + 1)},
        product=Product(str(i), title),
    )


def test_the_type_match_feature_reads_intent_and_product_types(model):
    hits = [
        _hit(0, "Acme X10 inkjet printer Colour A4"),
        _hit(1, "Acme X11 printer drum Original"),
        _hit(2, "Acme X12 networking cable 2 m"),
    ]
    intent = model.query_intent(analyze("acme printer"))
    x = feature_matrix(
        hits, query="acme printer", intent=intent, types=lambda p: model.product_types(p.title)
    )
    col = x[:, FEATURES.index("type_match")]
    assert col.tolist() == [1.0, 0.0, -1.0]
    none = feature_matrix(hits, query="acme printer")
    assert np.all(none[:, FEATURES.index("type_match")] == 0.0)


def test_the_rewriter_reports_the_intent_in_the_interpretation(model):
    lexicon = Lexicon.from_documents(([t.lower().split()], []) for t, _ in _catalog())
    rewriter = QueryRewriter(lexicon, types=model)
    interp = rewriter.rewrite("acme printer ")
    assert interp.intent is not None and interp.intent.head == "printer"
    assert interp.as_dict()["types"][0] == "inkjet printer"
    assert QueryRewriter(lexicon).rewrite("acme printer ").intent is None


def test_a_refresh_swaps_in_a_type_model_even_one_with_no_types(model):
    lexicon = Lexicon.from_documents(([t.lower().split()], []) for t, _ in _catalog())
    rewriter = QueryRewriter(lexicon, types=model)
    empty = TypeModel.fit([])
    rewriter.use(lexicon, empty)
    assert rewriter.types is empty
    assert rewriter.rewrite("acme printer ").intent is None
    rewriter.use(lexicon)  # no model given: the current one stays
    assert rewriter.types is empty
