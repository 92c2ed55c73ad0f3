"""The one product type every reader produces and every backend stores."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from indexer.reviews import ReviewStats

AttributeValue = str | float | bool


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
        d = asdict(self)
        d["attributes"] = dict(self.attributes)
        d["ean"] = list(self.ean)
        d["reviews"] = None if self.reviews is None else self.reviews.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Product:
        return cls(
            id=str(d["id"]),
            title=d["title"],
            description=d.get("description") or "",
            brand=d.get("brand") or "",
            category=d.get("category") or "",
            price=None if d.get("price") is None else float(d["price"]),
            attributes=dict(d.get("attributes") or {}),
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


def catalog_hash(products: list[Product]) -> str:
    """Order-independent hash of a whole catalog (recorded in index manifests)."""
    h = hashlib.sha256()
    for digest in sorted(p.content_hash() for p in products):
        h.update(digest.encode("ascii"))
    return h.hexdigest()
