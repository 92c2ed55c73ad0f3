import json

import pytest

from indexer.catalog import product_from_record, read_catalog
from indexer.errors import CatalogError
from tests.conftest import FIXTURES


def test_generic_jsonl_reports_bad_rows_and_keeps_good_ones():
    res = read_catalog(FIXTURES / "catalog_with_errors.jsonl")
    assert [p.id for p in res.products] == ["ok1", "ok2"]
    got = {(e.line, e.reason.split(":")[0].split(" (")[0]) for e in res.errors}
    assert got == {
        (2, "invalid JSON"),
        (3, "missing required field 'title'"),
        (4, "price must be a number >= 0, got -3"),
        (7, "expected an object, got list"),
        (8, "attributes must be an object, got list"),
    }
    ok2 = res.products[1]
    assert ok2.brand == "Acme" and ok2.attributes == {"colour": "red", "weight": 1.5}
    assert all(e.source == "catalog_with_errors.jsonl" for e in res.errors)


def test_csv_reader():
    res = read_catalog(FIXTURES / "catalog.csv")
    assert [p.id for p in res.products] == ["c1", "c3"]
    c1 = res.products[0]
    assert c1.ean == ("4006381333931", "4006381333932")
    assert c1.attributes == {"length": 1.0} and c1.in_stock is True and c1.price == pytest.approx(9.99)
    assert res.products[1].in_stock is False
    reasons = {e.line: e.reason for e in res.errors}
    assert reasons[3].startswith("price must be a number")
    assert reasons[5].startswith("in_stock must be true/false")


def test_icecat_mapping():
    rec = {
        "id": "3920564",
        "name": "006R90321",
        "title": "Xerox 006R90321 toner cartridge",
        "ean": ["0095205603217"],
        "short_description": "Toner (6 Per Box)",
        "supplier": "Xerox",
        "price": 4995,
        "img_500x500": "http://x/y.jpg",
        "date_released": "2009-12-10T00:00:00Z",
        "attr_t_product_type": "Toner",
        "attr_n_quantity_per_pack": 6.0,
        "attr_b_colour": False,
    }
    p = product_from_record(rec)
    assert p.brand == "Xerox" and p.price == pytest.approx(49.95) and p.category == "Toner"
    assert p.attributes == {"product_type": "Toner", "quantity_per_pack": 6.0, "colour": False}
    assert p.description == "Toner (6 Per Box)" and p.image_url == "http://x/y.jpg" and p.name == "006R90321"


def test_duplicate_ids_later_wins(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "title": "First"},
                {"id": "b", "title": "B"},
                {"id": "a", "title": "Second"},
            ]
        )
    )
    res = read_catalog(f)
    assert {p.id: p.title for p in res.products} == {"a": "Second", "b": "B"}
    assert len(res.errors) == 1 and "duplicate id 'a'" in res.errors[0].reason and res.errors[0].line == 1


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(CatalogError, match="catalog not found"):
        read_catalog(tmp_path / "nope.jsonl")
    bad = tmp_path / "catalog.txt"
    bad.write_text("x")
    with pytest.raises(CatalogError, match="unsupported catalog file"):
        read_catalog(bad)
    with pytest.raises(CatalogError, match="no catalog files"):
        read_catalog(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path)


def test_folder_skips_non_product_files(tmp_path):
    (tmp_path / "judgments.csv").write_text("query,docid,rating\nx,1,0\n")
    (tmp_path / "products.jsonl").write_text(json.dumps({"id": "1", "title": "T"}) + "\n")
    res = read_catalog(tmp_path)
    assert [p.id for p in res.products] == ["1"] and res.files == [str(tmp_path / "products.jsonl")]


def test_real_icecat_catalog(icecat_dir):
    res = read_catalog(icecat_dir / "products_1.json.zip", limit=500)
    assert len(res.products) == 500 and not res.errors
    assert all(p.title and p.brand for p in res.products)
    assert all(p.price is None or p.price >= 0 for p in res.products)
