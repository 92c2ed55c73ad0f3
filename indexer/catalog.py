"""Catalog readers: the Icecat JSON zips of the Chorus demo, and a generic JSONL / CSV / JSON schema.

Generic schema (one product per JSONL line, CSV row or JSON array element)::

    id           string (or integer), required, unique; see ``indexer.product.ID_RULE``
    title        string, required
    description  string
    brand        string
    category     string
    price        number >= 0, in currency units (not cents)
    attributes   object of name -> string | number | bool (in CSV: a JSON object string)
    ean          string or list of strings (in CSV: separated by "|")
    image_url    string
    in_stock     bool (in CSV: true/false/1/0/yes/no)

Records that carry Icecat keys (``supplier``, ``short_description``, ``attr_t_*``…) are read with
the Icecat mapping instead: ``supplier`` → brand, ``short_description`` → description, ``price``
in cents → currency units, ``attr_t_/attr_n_/attr_b_*`` → attributes, ``attr_t_product_type`` →
category, ``img_500x500`` → image_url.

Bad rows never stop a read: each is reported with its file, line (or array position) and reason,
and the good rows are returned.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.errors import CatalogError, RowError
from indexer.product import Product, check_id

log = logging.getLogger(__name__)

SUPPORTED = ".jsonl, .ndjson, .json, .csv, .json.zip (or a folder of them)"
_ICECAT_MARKERS = ("supplier", "short_description", "img_500x500")
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f", ""})
MAX_EANS = 1000
MAX_EAN_CHARS = 64


@dataclass
class CatalogReadResult:
    products: list[Product] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def read_catalog(path: str | Path, limit: int | None = None) -> CatalogReadResult:
    """Read every product under ``path`` (a file or a folder of catalog files).

    Duplicate ids: the later record wins and the earlier one is reported as an error row.
    """
    root = Path(path)
    if not root.exists():
        raise CatalogError(f"catalog not found: {root} (give a file or folder with {SUPPORTED})")
    files = _catalog_files(root)
    if not files:
        raise CatalogError(f"no catalog files in {root}; expected {SUPPORTED}")
    result = CatalogReadResult(files=[str(f) for f in files])
    seen: dict[str, tuple[str, int]] = {}
    by_id: dict[str, Product] = {}
    folder = root.is_dir()
    for f in files:
        if folder and not _looks_like_catalog(f):
            log.info("skipping %s: not a product file (no id/title in its first record)", f.name)
            result.files.remove(str(f))
            continue
        for line, record in _records(f, result.errors):
            try:
                product = product_from_record(record)
            except (KeyError, TypeError, ValueError) as exc:
                result.errors.append(RowError(f.name, line, _reason(exc)))
                continue
            if product.id in seen:
                src, first = seen[product.id]
                result.errors.append(
                    RowError(src, first, f"duplicate id {product.id!r}; replaced by {f.name}:{line}")
                )
            seen[product.id] = (f.name, line)
            by_id[product.id] = product
            if limit is not None and len(by_id) >= limit:
                break
        if limit is not None and len(by_id) >= limit:
            break
    if not result.files:
        raise CatalogError(f"no product files in {root}; expected {SUPPORTED} with id and title fields")
    result.products = list(by_id.values())
    if result.errors:
        log.warning("catalog %s: %d bad rows skipped (first: %s)", root, len(result.errors), result.errors[0])
    return result


def _looks_like_catalog(f: Path) -> bool:
    """In a folder, sniff the first record so judgments CSVs or event logs beside it are skipped."""
    scratch: list[RowError] = []
    try:
        for _, rec in _records(f, scratch):
            return "id" in rec and ("title" in rec or "name" in rec)
    except CatalogError:
        return False
    return False


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing required field {exc.args[0]!r}"
    return str(exc)


def _catalog_files(root: Path) -> list[Path]:
    if root.is_file():
        if not _is_supported(root):
            raise CatalogError(f"unsupported catalog file {root.name}; expected {SUPPORTED}")
        return [root]
    return sorted(p for p in root.iterdir() if p.is_file() and _is_supported(p))


def _is_supported(p: Path) -> bool:
    name = p.name.lower()
    return name.endswith((".jsonl", ".ndjson", ".json", ".csv", ".json.zip", ".jsonl.zip"))


def _records(f: Path, errors: list[RowError]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    name = f.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(f) as z:
                members = [m for m in z.namelist() if not m.endswith("/")]
                for m in members:
                    text = z.read(m).decode("utf-8")
                    yield from _parse_text(f.name, m, text, errors)
        else:
            text = f.read_text(encoding="utf-8")
            yield from _parse_text(f.name, f.name, text, errors)
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read catalog file {f}: {exc}") from exc


def _parse_text(
    source: str, member: str, text: str, errors: list[RowError]
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    lower = member.lower()
    if lower.endswith(".csv"):
        yield from _parse_csv(source, text, errors)
    elif lower.endswith((".jsonl", ".ndjson")):
        yield from _parse_jsonl(source, text, errors)
    elif text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatalogError(
                f"{source}: not valid JSON ({exc}); fix the file or convert it to JSONL"
            ) from exc
        for i, rec in enumerate(data, start=1):
            if isinstance(rec, dict):
                yield i, rec
            else:
                errors.append(RowError(source, i, f"expected an object, got {type(rec).__name__}"))
    else:
        yield from _parse_jsonl(source, text, errors)


def _parse_jsonl(source: str, text: str, errors: list[RowError]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(RowError(source, i, f"invalid JSON: {exc.msg}"))
            continue
        if not isinstance(rec, dict):
            errors.append(RowError(source, i, f"expected an object, got {type(rec).__name__}"))
            continue
        yield i, rec


def _parse_csv(source: str, text: str, errors: list[RowError]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "id" not in reader.fieldnames:
        raise CatalogError(f"{source}: CSV header must include 'id' and 'title' (got {reader.fieldnames})")
    for row in reader:
        line = reader.line_num
        if None in row:
            errors.append(RowError(source, line, "more values than header columns"))
            continue
        rec: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
        try:
            if "attributes" in rec:
                rec["attributes"] = json.loads(rec["attributes"])
            if "ean" in rec:
                rec["ean"] = [e for e in rec["ean"].split("|") if e]
            if "in_stock" in rec:
                rec["in_stock"] = _parse_bool(rec["in_stock"])
        except (ValueError, json.JSONDecodeError) as exc:
            errors.append(RowError(source, line, str(exc)))
            continue
        yield line, rec


def _parse_bool(v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"in_stock must be true/false, got {v!r}")


def _parse_price(v: Any, scale: float = 1.0) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ValueError(f"price must be a number, got {v!r}")
    try:
        price = float(v) / scale
    except OverflowError:
        price = math.inf
    except (TypeError, ValueError):
        raise ValueError(f"price must be a number, got {v!r}") from None
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"price must be a number >= 0, got {str(v)[:40]}")
    return price


def _str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        raise ValueError(f"expected text, got {type(v).__name__}")
    return _unicode(str(v).strip())


def _unicode(s: str) -> str:
    """``s`` if it can be stored as UTF-8 (JSON can carry lone surrogates, files cannot)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"text {s[:40]!r} is not valid Unicode (a lone surrogate)") from None
    return s


def _eans(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise ValueError(f"ean must be a string or a list, got {type(v).__name__}")
    out = tuple(_str(e) for e in v if e)
    if len(out) > MAX_EANS or any(len(e) > MAX_EAN_CHARS for e in out):
        raise ValueError(f"ean holds at most {MAX_EANS} codes of at most {MAX_EAN_CHARS} characters each")
    return out


def _attr_number(k: Any, v: float) -> float:
    try:
        x = float(v)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise ValueError(f"attribute {k!r} must be a finite number, got {str(v)[:40]}")
    return x


def product_from_record(rec: Mapping[str, Any]) -> Product:
    """Map one raw record (Icecat or generic) to a :class:`Product`; raises ValueError/KeyError."""
    if any(k in rec for k in _ICECAT_MARKERS) or any(str(k).startswith("attr_") for k in rec):
        return _from_icecat(rec)
    return _from_generic(rec)


def _from_generic(rec: Mapping[str, Any]) -> Product:
    attrs = rec.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise ValueError(f"attributes must be an object, got {type(attrs).__name__}")
    clean: dict[str, str | float | bool] = {}
    for k, v in attrs.items():
        if isinstance(v, bool):
            clean[_unicode(str(k))] = v
        elif isinstance(v, str):
            clean[_unicode(str(k))] = _unicode(v)
        elif isinstance(v, (int, float)):
            clean[_unicode(str(k))] = _attr_number(k, v)
        elif v is not None:
            raise ValueError(f"attribute {k!r} must be text, a number or a bool")
    return Product(
        id=check_id(rec["id"]),
        title=_str(rec["title"]),
        description=_str(rec.get("description")),
        brand=_str(rec.get("brand")),
        category=_str(rec.get("category")),
        price=_parse_price(rec.get("price")),
        attributes=clean,
        ean=_eans(rec.get("ean")),
        name=_str(rec.get("name")),
        image_url=_str(rec.get("image_url")),
        in_stock=_parse_bool(rec.get("in_stock")),
        date_released=_str(rec.get("date_released")) or None,
    )


def _from_icecat(rec: Mapping[str, Any]) -> Product:
    attrs: dict[str, str | float | bool] = {}
    for k, v in rec.items():
        if v is None or not isinstance(k, str) or not k.startswith("attr_"):
            continue
        kind, _, key = k[5:].partition("_")
        if kind == "t":
            attrs[key] = _unicode(str(v))
        elif kind == "n" and isinstance(v, (int, float)) and not isinstance(v, bool):
            attrs[key] = _attr_number(k, v)
        elif kind == "b":
            attrs[key] = bool(v)
    category = str(attrs.get("product_type", ""))
    if category.isdigit():  # a few Icecat records carry "1" as the product type
        category = ""
    return Product(
        id=check_id(rec["id"]),
        title=_str(rec.get("title")) or _str(rec.get("name")),
        description=_str(rec.get("short_description")),
        brand=_str(rec.get("supplier")),
        category=category,
        price=_parse_price(rec.get("price"), scale=100.0),
        attributes=attrs,
        ean=_eans(rec.get("ean")),
        name=_str(rec.get("name")),
        image_url=_str(rec.get("img_500x500") or rec.get("img_high")),
        in_stock=_parse_bool(rec.get("in_stock")) if "in_stock" in rec else None,
        date_released=_str(rec.get("date_released")) or None,
    )
