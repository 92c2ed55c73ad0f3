"""What a rebuild carries over from the live version: the product writes acknowledged since its build.

Both stores keep every API write (``POST/PUT/DELETE /v1/products``, ``shoprank upsert/delete``)
in an update log beside the live version: the embedded store in ``updates.jsonl``, OpenSearch in
``<alias>-updates`` (one document per product id). A rebuild from a catalog replays that log onto
the new version, so a write the catalog does not know about yet survives the rebuild. The rules,
the same for both stores:

* the last write per id counts;
* an upsert whose product equals the catalog's is dropped (the catalog caught up);
* a delete of an id the catalog does not have is dropped (nothing to delete);
* everything else is kept: an API write wins over the catalog until the catalog holds the same
  product, or until a rebuild with ``carry_updates=False`` (``shoprank index --discard-updates``);
* when the new version is embedded with another model or dimension, the carried products are
  embedded again with the new model (``reembed``); without one the build is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from indexer.errors import IndexMismatchError
from indexer.manifest import Manifest
from indexer.product import Product

log = logging.getLogger(__name__)

Reembed = Callable[[Sequence[Product]], np.ndarray]


@dataclass(frozen=True)
class Write:
    """The last write to one product id: an upsert (product + vector) or a delete (both None)."""

    id: str
    product: Product | None = None
    vector: np.ndarray | None = None
    model: tuple[str, int] | None = None  # (model id, dimension) of the vector; None: the live one's

    @property
    def is_delete(self) -> bool:
        return self.product is None


@dataclass
class Carried:
    upserts: list[Product] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.upserts) + len(self.deletes)


def embedding_of(m: Manifest) -> tuple[str, int]:
    return m.model_id, m.dimension


def carry(
    last: Mapping[str, Write],
    catalog: Sequence[Product],
    *,
    live: Manifest,
    new: Manifest,
    reembed: Reembed | None,
    where: str,
) -> Carried:
    """The writes of ``last`` (id → last write, in log order) the new version must replay."""
    by_id = {p.id: p for p in catalog}
    out = Carried()
    stale: list[int] = []  # carried upserts embedded with another model than the new version's
    for pid, w in last.items():
        if w.product is None:
            if pid in by_id:
                out.deletes.append(pid)
            continue
        known = by_id.get(pid)
        if known is not None and known.content_hash() == w.product.content_hash():
            continue
        if (w.model or embedding_of(live)) != embedding_of(new):
            stale.append(len(out.upserts))
        out.upserts.append(w.product)
        out.vectors.append(np.asarray(w.vector, dtype=np.float32))
    if stale:
        if reembed is None:
            raise IndexMismatchError(
                f"{where} holds {len(stale)} product(s) written through the API and embedded with "
                f"{live.model_id!r} ({live.dimension}-d) or another model; the new version uses "
                f"{new.model_id!r} ({new.dimension}-d), so they must be re-embedded: build with "
                "`shoprank index` (it re-embeds them), or discard those writes with "
                "`shoprank index --discard-updates`"
            )
        fresh = np.asarray(reembed([out.upserts[i] for i in stale]), dtype=np.float32)
        for i, v in zip(stale, fresh, strict=True):
            out.vectors[i] = v
        log.info("re-embedded %d carried product(s) with %s", len(stale), new.model_id)
    if len(out):
        log.info(
            "carrying %d upsert(s) and %d delete(s) from the live version of %s",
            len(out.upserts),
            len(out.deletes),
            where,
        )
    return out
