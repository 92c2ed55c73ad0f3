import zipfile
from collections import Counter
from pathlib import Path

import pytest

from indexer.errors import BadInputError
from tests.conftest import SHARED_DATA
from training.reviews_data import (
    AspectSentence,
    Review,
    ReviewDataError,
    parse_aspects,
    read_blitzer,
    read_chinese_shopping,
    read_hu_liu,
    read_uci_sentences,
    split_by_product,
)
from training.sentiment_baseline import markdown_table, tfidf_logreg_baseline


def _block(asin: str, rating: str, title: str, text: str, end: str = "</review>\n") -> str:
    return (
        "<review>\n<unique_id>\n"
        f"{asin}:some_title:reviewer\n</unique_id>\n<asin>\n{asin}\n</asin>\n"
        "<product_name>\nAcme Kettle: Kitchen\n</product_name>\n<product_type>\nkitchen\n</product_type>\n"
        f"<helpful>\n3 of 4\n</helpful>\n<rating>\n{rating}\n</rating>\n<title>\n{title}\n</title>\n"
        "<date>\nJuly 31, 2006\n</date>\n<reviewer>\nD. John &quot;X&quot;\n</reviewer>\n"
        f"<reviewer_location>\nPA\n</reviewer_location>\n<review_text>\n{text}\n</review_text>\n{end}"
    )


def _blitzer_folder(tmp_path: Path) -> Path:
    good = [
        _block("B000AAA001", "5.0", "Great kettle", "Boils fast.\n\nArrived in &amp;lt;2 days &amp; works."),
        _block("B000AAA002", "4.0", "Nice!", "Quiet   and\tsolid."),
        _block("B000AAA001", "5.0", "Again", "Second review of the same product & more."),
    ]
    bad_no_text = "<review>\n<asin>\nB000BAD\n</asin>\n<title>\nno body\n</title>\n</review>\n"
    bad_unterminated = _block("B000BAD2", "5.0", "cut", "truncated", end="")
    pos = good[0] + bad_no_text + good[1] + bad_unterminated + good[2]
    header = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<reviews>\n'
    (tmp_path / "kitchen_positive.review").write_text(header + pos + "</reviews>\n", encoding="utf-8")
    neg = _block("B000AAA003", "1.0", "Broke", "Leaked after a week.")
    (tmp_path / "kitchen_negative.review").write_text(header + neg + "</reviews>\n", encoding="utf-8")
    return tmp_path


def test_blitzer_parses_blocks_and_counts_bad_ones(tmp_path):
    res = read_blitzer(_blitzer_folder(tmp_path), domains=("kitchen",))
    assert [r.product for r in res] == ["B000AAA001", "B000AAA002", "B000AAA001", "B000AAA003"]
    assert [r.label for r in res] == [1, 1, 1, 0]
    first = res.items[0]
    assert first.text == "Great kettle. Boils fast. Arrived in <2 days & works."
    assert first.rating == 5.0 and first.domain == "kitchen" and first.lang == "en"
    assert res.items[1].text == "Nice! Quiet and solid."
    reasons = sorted(e.reason.split(" (")[0] for e in res.errors)
    assert reasons == ["no <review_text>…</review_text> in the block", "unterminated <review> block"]
    assert all(e.source == "kitchen_positive.review" and e.line > 1 for e in res.errors)


def test_blitzer_missing_domain_file_is_a_clear_error(tmp_path):
    with pytest.raises(ReviewDataError, match="missing books_positive.review"):
        read_blitzer(_blitzer_folder(tmp_path), domains=("books",))
    with pytest.raises(BadInputError, match="not found"):
        read_blitzer(tmp_path / "nope")


def test_uci_sentences_with_cr_line_endings(tmp_path):
    rows = [
        "So there is no way to plug it in.\t0",
        '"Good case, Excellent value."\t1',
        "no label here",
        "Meh.\t2",
        "",
    ]
    (tmp_path / "amazon_cells_labelled.txt").write_bytes("\r".join(rows).encode())
    (tmp_path / "yelp_labelled.txt").write_bytes(b"Wow... Loved this place.\t1\r")
    res = read_uci_sentences(tmp_path)
    assert [(r.text, r.label, r.domain, r.product) for r in res] == [
        ("So there is no way to plug it in.", 0, "amazon", ""),
        ('"Good case, Excellent value."', 1, "amazon", ""),
        ("Wow... Loved this place.", 1, "yelp", ""),
    ]
    assert {(e.line, e.reason) for e in res.errors} == {
        (3, "no tab between sentence and label"),
        (4, "label must be 0 or 1, got '2'"),
    }


def test_hu_liu_aspects(tmp_path):
    text = (
        "*****\n* Product name: Canon G3\n*****\n\n[t]excellent picture quality\n"
        "battery life[-2], screen[+1]##the battery dies fast but the screen is nice .\n"
        "##no aspects here .\n"
        "run[+3]#a single hash is not a sentence line\n"
    )
    z = tmp_path / "product_reviews_1.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("product_reviews_1/Canon_G3.txt", text)
        f.writestr("product_reviews_1/README.txt", "##not data\n")
    res = read_hu_liu(z)
    assert res.items == [
        AspectSentence(
            "the battery dies fast but the screen is nice .", {"battery life": -2, "screen": 1}, "Canon_G3"
        ),
        AspectSentence("no aspects here .", {}, "Canon_G3"),
    ]
    assert [(e.line, e.reason) for e in res.errors] == [(8, "no '##' before the sentence")]


def test_parse_aspects_quirks():
    assert parse_aspects("player[+], price[+3][u], zoom[u], setup[2], look{+1]") == {
        "player": 1,
        "price": 3,
        "look": 1,
    }
    assert parse_aspects("Camera[-1][cc], camera[+3]") == {"camera": 2}


def test_chinese_shopping_skips_empty_reviews(tmp_path):
    csv_text = (
        'cat,label,review\n书籍,1,\ufeff很好看的书\n平板,0,\n平板,0,NaN\n水果,0,"不新鲜,\n差"\n水果,x,坏\n'
    )
    z = tmp_path / "online_shopping_10_cats.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("online_shopping_10_cats.csv", ("\ufeff" + csv_text).encode("utf-8"))
    res = read_chinese_shopping(z)
    assert [(r.text, r.label, r.domain, r.lang) for r in res] == [
        ("很好看的书", 1, "书籍", "zh"),
        ("不新鲜, 差", 0, "水果", "zh"),
    ]
    assert Counter(e.reason for e in res.errors) == {"empty review": 2, "label must be 0 or 1, got 'x'": 1}


def _reviews() -> list[Review]:
    out = []
    for p in range(30):
        for k in range(1 + p % 4):
            out.append(
                Review(f"product {p} review {k}", (p + k) % 2, f"P{p}", "kitchen" if p % 2 else "books")
            )
    out += [Review(f"loose {i}", i % 2, "", "yelp") for i in range(50)]
    return out


def test_split_keeps_products_on_one_side_and_is_deterministic():
    reviews = _reviews()
    a = split_by_product(reviews, test_share=0.2, seed=13)
    assert len(a.train) + len(a.test) == len(reviews)
    assert not {r.product for r in a.train if r.product} & {r.product for r in a.test if r.product}
    assert sum(r.domain == "yelp" for r in a.test) == 10
    assert 0.1 < len(a.test) / len(reviews) < 0.3
    assert a == split_by_product(reviews, test_share=0.2, seed=13)
    assert a != split_by_product(reviews, test_share=0.2, seed=14)
    assert "on both sides 0" in a.describe()
    with pytest.raises(BadInputError):
        split_by_product(reviews, test_share=1.0)


def test_baseline_runs_on_a_tiny_synthetic_set():
    pos = ["great product works well", "love it great value", "excellent quality love", "works great"]
    neg = ["terrible broke fast", "awful waste of money", "broke after a day terrible", "awful quality"]
    train = [Review(t, 1, "", "x") for t in pos * 3] + [Review(t, 0, "", "x") for t in neg * 3]
    test = [Review("great quality love it", 1, "", "x"), Review("terrible awful broke", 0, "", "x")]
    m = tfidf_logreg_baseline(train, test, "en")
    assert all(0.0 <= m[k] <= 1.0 for k in ("accuracy", "macro_f1", "majority_accuracy"))
    zh = [Review("很好很好", 1, "", "x", lang="zh"), Review("很差很差", 0, "", "x", lang="zh")] * 3
    mz = tfidf_logreg_baseline(zh, zh[:2], "zh", tune_C=(1.0, 4.0))
    assert 0.0 <= mz["accuracy"] <= 1.0 and mz["C"] in (1.0, 4.0)
    assert markdown_table([{"set": "s", "split": "r", **m}]).count("\n") == 2
    with pytest.raises(BadInputError, match="lang"):
        tfidf_logreg_baseline(train, test, "fr")


@pytest.fixture(scope="module")
def reviews_data() -> Path:
    if not (SHARED_DATA / "reviews_en" / "blitzer_mds" / "books_positive.review").exists():
        pytest.skip(f"the review corpora are not at {SHARED_DATA} (see ../shared/README.md)")
    return SHARED_DATA


def test_real_blitzer_counts_and_chinese_size(reviews_data):
    res = read_blitzer(reviews_data / "reviews_en" / "blitzer_mds")
    assert not res.errors
    assert Counter((r.domain, r.label) for r in res) == {
        (d, label): 1000 for d in ("books", "dvd", "electronics", "kitchen") for label in (0, 1)
    }
    zh = read_chinese_shopping(reviews_data / "reviews_zh" / "online_shopping_10_cats.zip")
    assert len(zh) > 60_000 and len(zh) + len(zh.errors) == 62_774
