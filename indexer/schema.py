"""The searchable document shape shared by both backends: field names, default boosts, doc body."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from indexer.product import Product
from indexer.reviews import ReviewPrior

VECTOR_FIELD = "embedding"

# Full-text fields of the stored document.
TEXT_FIELDS = ("title", "name", "brand", "category", "description", "attributes_text")
# One combined field holding these fields' text (OpenSearch: ``copy_to``; embedded: the analyzed
# tokens concatenated). BM25 over the combined field normalizes one length and one idf per term,
# which ranks far better on the Chorus judgments than summing per-field BM25 scores.
COMBINED_FIELD = "all_text"
COMBINED_SOURCES = ("title", "brand", "name", "category", "description")
SEARCH_FIELDS = (*TEXT_FIELDS, COMBINED_FIELD)
# The text fields that name a product, what shoppers type (the others describe it): query
# understanding completes and corrects towards their terms (ranker.query.lexicon).
NAMING_FIELDS = ("title", "name", "brand", "category")
# The strict keyword leg (``SearchBackend.strict_lexical``): every query term in one of these
# fields, each term scored by its best field. Unlike the combined field it reads attribute values
# ("Bluetooth" as a connectivity attribute), the way a classic shop search engine does.
STRICT_FIELDS = TEXT_FIELDS

# Default lexical scoring: BM25 on the combined field (other fields can be boosted per setup).
# Chosen by a small grid on the Chorus dev judgments: `python -m bench.tune_lexical` (bench/README.md).
DEFAULT_FIELD_BOOSTS = MappingProxyType({COMBINED_FIELD: 1.0})
# Lexical score = BM25(query as typed) + DEFAULT_SYNONYM_WEIGHT × BM25(synonym-expanded query):
# synonyms add recall without letting a generic expansion term outrank exact matches.
DEFAULT_SYNONYM_WEIGHT = 0.3


def text_fields(p: Product) -> dict[str, str]:
    """The full-text view of a product, one string per field in :data:`TEXT_FIELDS`."""
    return {
        "title": p.title,
        "name": p.name,
        "brand": p.brand,
        "category": p.category,
        "description": p.description,
        "attributes_text": p.attribute_text(),
    }


def document(p: Product, vector: Any | None = None) -> dict[str, Any]:
    """The stored document: text fields, filterable keywords, the product itself and the vector."""
    doc: dict[str, Any] = {
        "id": p.id,
        **text_fields(p),
        "ean": list(p.ean),
        "price": p.price,
        "in_stock": p.in_stock,
        "image_url": p.image_url,
        "date_released": p.date_released,
        "attributes": {k: v for k, v in p.attributes.items()},
    }
    if p.reviews is not None:
        doc["reviews"] = p.reviews.to_dict(ReviewPrior())
    if vector is not None:
        doc[VECTOR_FIELD] = [float(x) for x in vector]
    return doc


def product_from_document(doc: dict[str, Any]) -> Product:
    """The product back from a stored document (extra fields such as the vector are ignored)."""
    return Product.from_dict(doc)
