"""The query's numbers: price bounds and measures parsed, normalised and matched against products."""

from __future__ import annotations

import pytest

from indexer.product import Product
from ranker.base import Constraint
from ranker.query.constraints import constraint_match, parse, product_measures


def _one(q: str) -> Constraint:
    cs = parse(q).constraints
    assert len(cs) == 1, cs
    return cs[0]


@pytest.mark.parametrize(
    ("query", "text", "low", "high"),
    [
        ("tv under 100", "tv", None, 100.0),
        ("headphones below $50", "headphones", None, 50.0),
        ("laptop less than 800 euros", "laptop", None, 800.0),
        ("printer up to €120", "printer", None, 120.0),
        ("mouse over 30", "mouse", 30.0, None),
        ("at least 200 dollars camera", "camera", 200.0, None),
        ("speaker 100-200", "speaker", 100.0, 200.0),
        ("between 50 and 99.99 keyboard", "keyboard", 50.0, 99.99),
        ("monitor $150 to $300", "monitor", 150.0, 300.0),
        ("tv under ５００", "tv", None, 500.0),  # fullwidth digits
        ("tv under ५००", "tv", None, 500.0),  # Devanagari digits
    ],
)
def test_price_phrases_become_bounds_and_leave_the_text(query, text, low, high):
    p = parse(query)
    assert p.text == text
    assert [(c.kind, c.low, c.high) for c in p.constraints] == [("price", low, high)]


@pytest.mark.parametrize(
    ("query", "kind", "value", "unit"),
    [
        ("55 inch tv", "diagonal", 55.0, "in"),
        ('55" tv', "diagonal", 55.0, "in"),
        ("15.6in laptop", "diagonal", 15.6, "in"),
        ("16gb usb stick", "capacity", 16.0, "GB"),
        ("1 tb ssd", "capacity", 1000.0, "GB"),
        ("512 MB card", "capacity", 0.512, "GB"),
        ("750w power supply", "power", 750.0, "W"),
        ("10000 mah power bank", "battery", 10000.0, "mAh"),
        ("144hz monitor", "refresh", 144.0, "Hz"),
        ("4k monitor", "resolution", 2160, "p"),
        ("full hd projector", "resolution", 1080, "p"),
    ],
)
def test_measures_are_normalised_and_stay_in_the_text(query, kind, value, unit):
    c = _one(query)
    assert (c.kind, c.unit) == (kind, unit) and c.low == c.high == pytest.approx(value)
    assert parse(query).text == query  # words such as "55" still match titles


@pytest.mark.parametrize(
    "query",
    [
        "under under",  # no number
        "under 1e400",  # not a number we read
        "under 99999999999",  # more than 9 digits
        "tn-2110 toner",  # a model number
        "iphone 11",
        "windows 10",
        "usb 3.0 hub",
        "2-in-1 laptop",  # no inch mark
        "2 in 1 laptop",
        "ps4 pro",
        "1000-2000-3000",  # a part number, not a range
    ],
)
def test_nonsense_and_model_numbers_give_no_constraint(query):
    p = parse(query)
    assert p.constraints == () and p.text == query


def test_a_reversed_range_is_no_range():
    assert parse("200-100").constraints == ()


TV55 = Product("a", 'Samsung UE55 TV 139.7 cm (55") 4K Ultra HD Smart TV Black', price=499.0)
TV65 = Product("b", 'LG 65UN TV 165.1 cm (65") 3840 x 2160 pixels Smart TV', price=899.0)
STICK = Product("c", "SanDisk Ultra 16GB USB flash drive", attributes={"capacity": "16 GB"}, price=9.0)
NOTHING = Product("d", "HDMI cable")


def test_product_measures_read_icecat_titles_and_attributes():
    assert product_measures(TV55) == {"diagonal": {55.0}, "resolution": {2160}}
    assert product_measures(TV65) == {"diagonal": {65.0}, "resolution": {2160}}
    assert product_measures(STICK) == {"capacity": {16.0}}
    assert product_measures(NOTHING) == {}


def test_constraint_match_is_the_mean_of_met_minus_contradicted():
    q = parse("55 inch tv under 600").constraints
    assert constraint_match(q, TV55) == 1.0  # both met
    assert constraint_match(q, TV65) == -1.0  # both contradicted
    assert constraint_match(q, NOTHING) == 0.0  # unknown size, no price: nothing said
    assert constraint_match(parse("4k tv").constraints, TV65) == 1.0
    assert constraint_match(parse("32gb usb").constraints, STICK) == -1.0
    assert constraint_match((), TV55) == 0.0 and constraint_match(q, None) == 0.0
    # a price exactly at the bound meets it; a cent above does not (no slack on prices)
    assert constraint_match(parse("under 499").constraints, TV55) == 1.0
    assert constraint_match(parse("under 498.99").constraints, TV55) == -1.0
