"""The one product type every reader produces and every backend stores."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from indexer.errors import BadInputError
from indexer.reviews import ReviewStats

AttributeValue = str | float | bool
# strings up to this long are shared across a catalog read (Product.from_dict)
SHARED_MAX_CHARS = 64

#: The one product id rule, enforced wherever an id comes in (catalog rows, ``POST /v1/products``,
#: every ``/v1/products/{id}`` path, ``similar``): 1-128 characters, none of them whitespace, a
#: control character, ``/`` or ``\``, and not starting with ``.``. So every id can be put in a URL
#: path (percent-encoded) and addressed again, "." and ".." cannot be swallowed by path
#: normalization, and every id fits OpenSearch's 512-byte ``_id``. ``plugin_api.http.schemas`` uses
#: the same pattern for the HTTP paths.
ID_MAX_CHARS = 128
_ID_FORBIDDEN = r"\s/\\\x00-\x1f\x7f-\x9f"
ID_PATTERN = rf"^[^{_ID_FORBIDDEN}.][^{_ID_FORBIDDEN}]{{0,{ID_MAX_CHARS - 1}}}$"
ID_RULE = (
    f"1-{ID_MAX_CHARS} characters without whitespace, control characters, '/' or '\\', not starting with '.'"
)
_ID_RE = re.compile(ID_PATTERN)


def check_id(value: object, *, what: str = "product id") -> str:
    """``value`` as an id under the one id rule (products, and shoppers as ``what="client_id"``),
    or ValueError saying what the rule is."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{what} must be text (or an integer), got {type(value).__name__}")
    pid = str(value)
    if not _ID_RE.fullmatch(pid):
        shown = repr(pid[:40]) + (f"... ({len(pid)} characters)" if len(pid) > 40 else "")
        raise ValueError(f"{what} {shown} is not allowed: use {ID_RULE}")
    return pid


def duplicate_ids(products: Sequence[Product]) -> list[str]:
    """Ids that occur more than once in ``products``, sorted."""
    return sorted(i for i, n in Counter(p.id for p in products).items() if n > 1)


def check_batch(products: Sequence[Product]) -> None:
    """Refuse a write batch with a malformed id or an id twice, before anything is stored."""
    for p in products:
        try:
            check_id(p.id)
        except ValueError as exc:
            raise BadInputError(f"{exc}; nothing was stored") from None
    dupes = duplicate_ids(products)
    if dupes:
        shown = ", ".join(repr(d) for d in dupes[:5])
        raise BadInputError(
            f"product id {shown} occurs more than once in one batch ({len(dupes)} such id(s)); "
            "send each product once per batch; nothing was stored"
        )


class Attributes(Mapping[str, AttributeValue]):
    """A product's attributes, read-only and compact: the names as one tuple shared by every
    product with the same names (with their positions), the values as a tuple. A dict per
    product costs about 1 kB for Chorus's 19 attributes; this about 0.2 kB."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: tuple[tuple[str, ...], dict[str, int]], values: tuple[AttributeValue, ...]):
        self._names = names
        self._values = values

    @classmethod
    def of(cls, attributes: Mapping[str, AttributeValue], shared: dict[Any, Any]) -> Attributes:
        """``attributes`` with its names shared through ``shared`` (one dict for a catalog read)."""
        keys = tuple(attributes)
        names = shared.get(keys)
        if names is None:
            names = shared[keys] = (keys, {k: i for i, k in enumerate(keys)})
        return cls(names, tuple(attributes.values()))

    def __getitem__(self, key: str) -> AttributeValue:
        return self._values[self._names[1][key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names[0])

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return repr(dict(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


@dataclass(frozen=True)
class Product:
    """A normalized catalog entry.

    ``price`` is in currency units (the Icecat catalog stores cents; the reader converts).
    ``attributes`` keeps the sparse per-category attributes, keyed without their Icecat prefix.
    """

    id: str
    title: str
    description: str = ""
    brand: str = ""
    category: str = ""
    price: float | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    ean: tuple[str, ...] = ()
    name: str = ""
    image_url: str = ""
    in_stock: bool | None = None
    date_released: str | None = None
    # What the shop's reviews say (``shoprank reviews ingest``); not part of the catalog content.
    reviews: ReviewStats | None = None

    def __post_init__(self) -> None:
        if not self.id or not str(self.id).strip():
            raise ValueError("product id is empty")
        if not self.title or not self.title.strip():
            raise ValueError(f"product {self.id!r} has an empty title")
        if self.price is not None and (math.isnan(self.price) or self.price < 0):
            raise ValueError(f"product {self.id!r} has an invalid price {self.price!r}")

    # -- text views -------------------------------------------------------------------------
    def attribute_text(self, limit: int = 40) -> str:
        """Text attribute values joined, for full-text matching (numbers and booleans skipped)."""
        values = [v for v in self.attributes.values() if isinstance(v, str) and v.strip()]
        return " ".join(values[:limit])

    def embedding_text(self, max_description_chars: int = 400) -> str:
        """The text the bi-encoder embeds: short, with the most discriminative fields first."""
        parts = [self.title]
        if self.brand and self.brand.lower() not in self.title.lower():
            parts.append(self.brand)
        if self.category and self.category.lower() not in self.title.lower():
            parts.append(self.category)
        if self.description:
            parts.append(self.description[:max_description_chars])
        return ". ".join(p.strip() for p in parts if p.strip())

    # -- identity ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # the fields one by one, not dataclasses.asdict: its deep copy of scalar attribute values
        # was most of the cost of hashing a catalog at load (a million products: minutes)
        d = {f.name: getattr(self, f.name) for f in _FIELDS}
        d["attributes"] = dict(self.attributes)
        d["ean"] = list(self.ean)
        d["reviews"] = None if self.reviews is None else self.reviews.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], shared: dict[Any, Any] | None = None) -> Product:
        """The product of its :meth:`to_dict`. With ``shared`` (one dict for a whole catalog read),
        equal short strings — brands, categories, attribute names and values — become one string
        object: a product read from JSON holds its own copy of each, which halves a catalog's
        memory (Chorus: 4.0 → 2.1 kB a product); attributes become :class:`Attributes`, their
        names held once per set of names."""
        if shared is None:
            return cls._of(d, lambda v: v)

        def one(v: Any) -> Any:
            return shared.setdefault(v, v) if isinstance(v, str) and len(v) <= SHARED_MAX_CHARS else v

        return cls._of(d, one, shared)

    @classmethod
    def _of(
        cls, d: Mapping[str, Any], one: Callable[[Any], Any], shared: dict[Any, Any] | None = None
    ) -> Product:
        attributes: Mapping[str, AttributeValue] = {
            one(k): one(v) for k, v in (d.get("attributes") or {}).items()
        }
        if shared is not None:
            attributes = Attributes.of(attributes, shared)
        return cls(
            id=str(d["id"]),
            title=d["title"],
            description=d.get("description") or "",
            brand=one(d.get("brand") or ""),
            category=one(d.get("category") or ""),
            price=None if d.get("price") is None else float(d["price"]),
            attributes=attributes,
            ean=tuple(d.get("ean") or ()),
            name=d.get("name") or "",
            image_url=d.get("image_url") or "",
            in_stock=d.get("in_stock"),
            date_released=d.get("date_released"),
            reviews=ReviewStats.from_dict(d["reviews"]) if d.get("reviews") else None,
        )

    def content_hash(self) -> str:
        """Stable hash of every catalog field (review aggregates are not catalog content)."""
        d = self.to_dict()
        d.pop("reviews", None)
        blob = json.dumps(d, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_FIELDS = fields(Product)


def catalog_hash(products: list[Product]) -> str:
    """Order-independent hash of a whole catalog (recorded in index manifests)."""
    h = hashlib.sha256()
    for digest in sorted(p.content_hash() for p in products):
        h.update(digest.encode("ascii"))
    return h.hexdigest()
