"""The writer role: one small protocol every index backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from indexer.manifest import Manifest
from indexer.product import Product


@dataclass(frozen=True)
class DocError:
    id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.id}: {self.reason}"


@dataclass
class WriteReport:
    """What a write did: counts, per-document failures, and where it went."""

    indexed: int = 0
    deleted: int = 0
    errors: list[DocError] = field(default_factory=list)
    target: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors


@runtime_checkable
class IndexStore(Protocol):
    """Stores products with their vectors.

    ``build`` writes a complete new version and switches readers to it atomically only when the
    whole build succeeded (OpenSearch: versioned index + alias swap; embedded: versioned folder +
    pointer file). ``upsert``/``delete`` change single products in the live version.
    """

    name: str

    def build(
        self, products: Sequence[Product], vectors: np.ndarray, manifest: Manifest, *, progress: bool = False
    ) -> WriteReport: ...

    def upsert(self, products: Sequence[Product], vectors: np.ndarray) -> WriteReport: ...

    def delete(self, ids: Sequence[str]) -> WriteReport: ...

    def manifest(self) -> Manifest | None: ...
