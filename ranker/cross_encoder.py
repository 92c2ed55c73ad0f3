"""Cross-encoder reranking: the short product text it reads, and the model wrapper.

The model is one we fine-tune ourselves (``shoprank train reranker``) from the all-MiniLM-L6-v2
checkpoint; it is loaded from a local folder whose manifest is checked first, never from a hub.
"""

from __future__ import annotations

from indexer.product import Product

# Attributes worth a few tokens: they separate otherwise identical titles (colour, size, type).
KEY_ATTRIBUTES = (
    "product_type",
    "product_colour",
    "type",
    "form_factor",
    "display_diagonal",
    "capacity",
    "internal_memory",
    "storage_capacity",
    "connectivity_technology",
    "compatibility",
)
MAX_PASSAGE_CHARS = 300
MAX_ATTRIBUTE_CHARS = 60


def passage(p: Product, max_chars: int = MAX_PASSAGE_CHARS) -> str:
    """The product as the cross-encoder reads it: title, brand, category, a few key attributes.

    Short on purpose (reranking latency grows with input length); the same function builds the
    training pairs and the serving inputs, so both see the same text.
    """
    parts = [p.title]
    if p.brand and p.brand.lower() not in p.title.lower():
        parts.append(f"brand {p.brand}")
    if p.category and p.category.lower() not in p.title.lower():
        parts.append(p.category)
    attrs = []
    for key in KEY_ATTRIBUTES:
        v = p.attributes.get(key)
        if v is None or isinstance(v, bool):
            continue
        text = f"{v:g}" if isinstance(v, float) else str(v)[:MAX_ATTRIBUTE_CHARS]
        if text and text.lower() not in p.title.lower():
            attrs.append(f"{key.replace('_', ' ')} {text}")
    if attrs:
        parts.append("; ".join(attrs))
    text = " | ".join(parts)
    return text if len(text) <= max_chars else text[: max_chars - 1].rsplit(" ", 1)[0] + "…"
