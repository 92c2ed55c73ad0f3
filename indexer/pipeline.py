"""Catalog → embeddings → store: the indexing job, with separate embedding and write timings."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from indexer.analysis import ANALYZER_VERSION
from indexer.base import IndexStore, WriteReport
from indexer.carry import Reembed
from indexer.embedding.embedders import Embedder, EmbeddingCache, embed_texts
from indexer.errors import BadInputError, IndexMismatchError
from indexer.manifest import Manifest
from indexer.product import Product, catalog_hash, check_batch

log = logging.getLogger(__name__)


@dataclass
class IndexReport:
    documents: int
    embedded: int
    cached: int
    embed_seconds: float
    write_seconds: float
    write: WriteReport
    manifest: Manifest
    notes: list[str] = field(default_factory=list)

    @property
    def embed_docs_per_s(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 and self.embedded else 0.0

    @property
    def write_docs_per_s(self) -> float:
        return self.documents / self.write_seconds if self.write_seconds > 0 else 0.0


@runtime_checkable
class CarryingStore(Protocol):
    """A store whose build carries the live version's API writes into the new version
    (``indexer.carry``): both shoprank stores are."""

    carries_updates: bool

    def build(
        self,
        products: Sequence[Product],
        vectors: np.ndarray,
        manifest: Manifest,
        *,
        progress: bool = False,
        reembed: Reembed | None = None,
        carry_updates: bool = True,
    ) -> WriteReport: ...


def build_index(
    products: Sequence[Product],
    store: IndexStore,
    embedder: Embedder,
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int = 64,
    progress: bool = False,
    extra: dict | None = None,
    carry_updates: bool = True,
) -> IndexReport:
    """Embed every product (reusing cached vectors) and write a complete new index version.

    The products written through the API to the live version since its build are carried into
    the new one (embedded again when ``embedder`` is another model), unless ``carry_updates`` is
    False: then the new version holds the catalog only."""
    if not products:
        raise BadInputError("the catalog has no valid products; nothing to index (see the row errors above)")
    check_batch(products)
    # Reach the store before the long embedding step: a node that is down fails in a second,
    # not after minutes of embedding.
    store.manifest()
    t0 = time.perf_counter()
    texts = [p.embedding_text() for p in products]
    vectors, computed = embed_texts(texts, embedder, cache, batch_size=batch_size, progress=progress)
    embed_s = time.perf_counter() - t0
    manifest = Manifest(
        kind=f"{store.name}-index",
        model_id=embedder.model_id,
        dimension=embedder.dimension,
        catalog_hash=catalog_hash(list(products)),
        documents=len(products),
        analyzer_version=ANALYZER_VERSION,
        extra=dict(extra or {}),
    )

    def reembed(carried: Sequence[Product]) -> np.ndarray:
        vecs, _ = embed_texts([p.embedding_text() for p in carried], embedder, cache, batch_size=batch_size)
        return vecs

    t1 = time.perf_counter()
    if isinstance(store, CarryingStore):
        report = store.build(
            products, vectors, manifest, progress=progress, reembed=reembed, carry_updates=carry_updates
        )
    else:
        report = store.build(products, vectors, manifest, progress=progress)
    write_s = time.perf_counter() - t1
    log.info(
        "indexed %d products (%d embedded, %d cached) into %s",
        len(products),
        computed,
        len(products) - computed,
        report.target,
    )
    return IndexReport(
        documents=len(products),
        embedded=computed,
        cached=len(products) - computed,
        embed_seconds=embed_s,
        write_seconds=write_s,
        write=report,
        manifest=manifest,
    )


def check_compatible(manifest: Manifest | None, embedder: Embedder, where: str) -> Manifest:
    """The manifest check every reader does before serving queries with ``embedder``."""
    if manifest is None:
        raise IndexMismatchError(f"{where} has no shoprank manifest; build it with `shoprank index`")
    manifest.check(
        model_id=embedder.model_id,
        dimension=embedder.dimension,
        analyzer_version=ANALYZER_VERSION,
        where=where,
    )
    return manifest
