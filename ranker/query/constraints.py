"""Numbers with meaning in a query: price bounds and measured attributes, parsed and matched.

``parse("tv under $500")`` → the text to search (``"tv"``: price phrases go, they would only
match model numbers) and the constraints (price ≤ 500). Measures stay in the text and become
constraints too: ``55 inch`` / ``55"`` (a diagonal, matched against Icecat's ``139.7 cm (55")``),
``16gb`` / ``1 tb`` (capacity, in GB), ``4k`` / ``1080p`` / ``full hd`` (vertical resolution),
``750w``, ``10000 mah``, ``144hz``, ``12 mp``. Each is a *soft* preference: ranking reads
:func:`constraint_match` as a feature; a filter the shopper chose stays the only hard limit.

Numbers are ASCII or any Unicode decimal digits, at most 9 digits before the point; anything
else (``under under``, ``1e400``) parses to no constraint.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.product import Product
from ranker.base import Constraint

_NUM = r"(\d{1,9}(?:[.,]\d{1,2})?)"
_CUR = r"(?:[$€£]|usd|eur|euros?|dollars?|gbp|pounds?)"
_UPPER = r"under|below|less\s+than|cheaper\s+than|up\s+to|max(?:imum)?|at\s+most|no\s+more\s+than|<=?"
_LOWER = r"over|above|more\s+than|at\s+least|min(?:imum)?|>=?"
PRICE_UPPER = re.compile(rf"(?<!\w)(?:{_UPPER})\s*{_CUR}?\s*{_NUM}\s*{_CUR}?(?!\w)", re.I)
PRICE_LOWER = re.compile(rf"(?<!\w)(?:{_LOWER})\s*{_CUR}?\s*{_NUM}\s*{_CUR}?(?!\w)", re.I)
PRICE_RANGE = re.compile(
    rf"(?<![\w-])(?:between\s+|from\s+)?{_CUR}?\s*{_NUM}\s*{_CUR}?\s*(?:-|–|to|and)\s*{_CUR}?\s*{_NUM}\s*{_CUR}?(?![\w-])",
    re.I,
)

# unit word → (kind, canonical unit, factor to it)
UNITS = {
    "gb": ("capacity", "GB", 1.0),
    "tb": ("capacity", "GB", 1000.0),
    "mb": ("capacity", "GB", 0.001),
    "inch": ("diagonal", "in", 1.0),
    "inches": ("diagonal", "in", 1.0),
    "in": ("diagonal", "in", 1.0),
    '"': ("diagonal", "in", 1.0),
    "″": ("diagonal", "in", 1.0),
    "”": ("diagonal", "in", 1.0),
    "mah": ("battery", "mAh", 1.0),
    "w": ("power", "W", 1.0),
    "watt": ("power", "W", 1.0),
    "watts": ("power", "W", 1.0),
    "hz": ("refresh", "Hz", 1.0),
    "mp": ("sensor", "MP", 1.0),
}
_UNIT_WORDS = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
MEASURE = re.compile(rf"(?<![\w.]){_NUM}\s*-?\s*({_UNIT_WORDS})(?![\w-])", re.I)
# "2 in 1", "2-in-1": no inch mark
NOT_INCH = re.compile(r"\s*-?\s*\d")
# Icecat's screen sizes: "139.7 cm (55")"
CM_INCH = re.compile(r"(\d{1,4}(?:[.,]\d{1,2})?)\s*cm\s*\(\s*(\d{1,3}(?:[.,]\d{1,2})?)\s*(?:\"|″|”|'')\s*\)")
RESOLUTIONS = {
    "8k": 4320,
    "4k": 2160,
    "uhd": 2160,
    "2160p": 2160,
    "qhd": 1440,
    "wqhd": 1440,
    "1440p": 1440,
    "full hd": 1080,
    "fhd": 1080,
    "1080p": 1080,
    "hd ready": 720,
    "720p": 720,
}
RESOLUTION = re.compile(
    r"(?<!\w)(" + "|".join(re.escape(k) for k in sorted(RESOLUTIONS, key=len, reverse=True)) + r")(?!\w)",
    re.I,
)
PIXELS = re.compile(r"(\d{3,4})\s*[x×]\s*(\d{3,4})\s*(?:pixels)?", re.I)
# a measured value within this share of the asked one matches (55" vs a 54.6" panel)
TOLERANCE = 0.02
MAX_PRICE = 10_000_000.0


@dataclass(frozen=True)
class ParsedQuery:
    text: str  # what to search: the query without its price phrases
    constraints: tuple[Constraint, ...]


def _number(s: str) -> float | None:
    """A number from ASCII or other Unicode decimal digits ("５５" → 55); None when unreadable."""
    digits = "".join(str(unicodedata.digit(c)) if c.isdigit() else c for c in s).replace(",", ".")
    try:
        v = float(digits)
    except ValueError:
        return None
    return v if 0 <= v <= MAX_PRICE else None


def parse(query: str) -> ParsedQuery:
    text = query
    found: list[Constraint] = []
    spans: list[tuple[int, int]] = []

    def taken(m: re.Match[str]) -> bool:
        return any(m.start() < e and s < m.end() for s, e in spans)

    for m in PRICE_RANGE.finditer(query):
        lo, hi = _number(m.group(1)), _number(m.group(2))
        is_price = bool(re.search(_CUR, m.group(0), re.I)) or m.group(0).lower().lstrip().startswith(
            ("between", "from")
        )
        bare = re.fullmatch(rf"\s*{_NUM}\s*-\s*{_NUM}\s*", m.group(0)) is not None
        if lo is not None and hi is not None and lo < hi and (is_price or bare):
            found.append(Constraint("price", lo, hi, "", m.group(0).strip()))
            spans.append((m.start(), m.end()))
    for pattern, bound in ((PRICE_UPPER, "high"), (PRICE_LOWER, "low")):
        for m in pattern.finditer(query):
            v = _number(m.group(1))
            if v is None or taken(m):
                continue
            found.append(
                Constraint(
                    "price",
                    v if bound == "low" else None,
                    v if bound == "high" else None,
                    "",
                    m.group(0).strip(),
                )
            )
            spans.append((m.start(), m.end()))
    for m in MEASURE.finditer(query):
        v = _number(m.group(1))
        unit = m.group(2).lower()
        if v is None or taken(m) or v == 0:
            continue
        if unit == "in" and NOT_INCH.match(query, m.end()):
            continue
        kind, canonical, factor = UNITS[unit]
        found.append(Constraint(kind, v * factor, v * factor, canonical, m.group(0).strip()))
    for m in RESOLUTION.finditer(query):
        lines = RESOLUTIONS[m.group(1).lower()]
        found.append(Constraint("resolution", lines, lines, "p", m.group(0)))
    for s, e in sorted(spans, reverse=True):  # price phrases leave the searched text
        text = text[:s] + " " + text[e:]
    text = " ".join(text.split()) if spans else query
    return ParsedQuery(text or query, tuple(found))


def product_measures(p: Product) -> dict[str, set[float]]:
    """What a product's title, name and attribute values state, per constraint kind."""
    blob = " ".join([p.title, p.name, p.attribute_text()])
    out: dict[str, set[float]] = {}
    for m in CM_INCH.finditer(blob):
        v = _number(m.group(2))
        if v is not None:
            out.setdefault("diagonal", set()).add(v)
    for m in MEASURE.finditer(blob):
        v = _number(m.group(1))
        if v is None or v == 0:
            continue
        kind, _, factor = UNITS[m.group(2).lower()]
        if kind == "diagonal" and m.group(2) == "in":
            continue  # "in" in prose ("fits in 2 minutes") is no inch mark on the product side
        out.setdefault(kind, set()).add(v * factor)
    for m in RESOLUTION.finditer(blob):
        out.setdefault("resolution", set()).add(RESOLUTIONS[m.group(1).lower()])
    for m in PIXELS.finditer(blob):
        w, h = int(m.group(1)), int(m.group(2))
        out.setdefault("resolution", set()).add(min(w, h))
    return out


def _meets(c: Constraint, values: set[float], tolerance: float = TOLERANCE) -> bool:
    lo, hi = c.low, c.high
    for v in values:
        slack = tolerance * v
        if (lo is None or v >= lo - slack) and (hi is None or v <= hi + slack):
            return True
    return False


def constraint_match(constraints: Sequence[Constraint], p: Product | None) -> float:
    """Mean over the constraints: +1 met, -1 contradicted (the product states another value of
    that kind, or a price outside the bounds), 0 unknown; 0 without constraints."""
    if not constraints or p is None:
        return 0.0
    measures = product_measures(p) if any(c.kind != "price" for c in constraints) else {}
    total = 0.0
    for c in constraints:
        if c.kind == "price":
            if p.price is None:
                continue
            total += 1.0 if _meets(c, {float(p.price)}, 0.0) else -1.0
            continue
        values = measures.get(c.kind)
        if values:
            total += 1.0 if _meets(c, values) else -1.0
    return total / len(constraints)
