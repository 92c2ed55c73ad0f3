"""The embedded index on disk: versioned folders, an atomic CURRENT pointer, and an update log.

Layout::

    <root>/CURRENT                       name of the live version (replaced atomically)
    <root>/versions/<v>/manifest.json    schema version, model id, dimension, catalog hash, ...
    <root>/versions/<v>/products.jsonl   one Product per line
    <root>/versions/<v>/vectors.npy      float32 [documents × dimension], rows aligned with products
    <root>/versions/<v>/updates.jsonl    append-only upserts/deletes since the build (fsync'ed)

A build writes a complete new version and only then switches CURRENT, so readers never see a
half-built index and a failed build loses nothing. Older versions beyond ``keep_old`` are removed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from indexer.base import DocError, WriteReport
from indexer.durable_log import append_records, fsync_dir, read_records
from indexer.errors import BadInputError, IndexMismatchError, NotFoundError
from indexer.manifest import Manifest
from indexer.product import Product, catalog_hash

log = logging.getLogger(__name__)


@dataclass
class EmbeddedSnapshot:
    """The live version, with the update log applied."""

    version: str
    manifest: Manifest
    products: list[Product]
    vectors: np.ndarray


class EmbeddedStore:
    name = "embedded"

    def __init__(self, root: str | Path, *, keep_old: int = 1):
        self.root = Path(root)
        self.keep_old = keep_old

    # -- paths --------------------------------------------------------------------------------
    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def current_version(self) -> str | None:
        p = self.root / "CURRENT"
        if not p.exists():
            return None
        v = p.read_text().strip()
        return v or None

    def _vdir(self, version: str) -> Path:
        return self.versions_dir / version

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- IndexStore ---------------------------------------------------------------------------
    def build(
        self, products: Sequence[Product], vectors: np.ndarray, manifest: Manifest, *, progress: bool = False
    ) -> WriteReport:
        t0 = time.perf_counter()
        _check_vectors(products, vectors, manifest.dimension)
        version = "v-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        with self._lock():
            tmp = self.versions_dir / (version + ".tmp")
            tmp.mkdir(parents=True, exist_ok=False)
            try:
                with open(tmp / "products.jsonl", "w", encoding="utf-8") as fh:
                    for p in products:
                        fh.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
                with open(tmp / "vectors.npy", "wb") as fh:
                    np.save(fh, np.asarray(vectors, dtype=np.float32))
                manifest.save(tmp / "manifest.json")
                (tmp / "updates.jsonl").touch()
                fsync_dir(tmp)
                tmp.rename(self._vdir(version))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            pointer = self.root / "CURRENT.tmp"
            pointer.write_text(version + "\n")
            os.replace(pointer, self.root / "CURRENT")
            fsync_dir(self.root)
            self._prune(version)
        log.info("embedded index %s built: %d products in %s", version, len(products), self.root)
        return WriteReport(
            indexed=len(products), target=str(self._vdir(version)), seconds=time.perf_counter() - t0
        )

    def _prune(self, live: str) -> None:
        olds = sorted(v.name for v in self.versions_dir.iterdir() if v.is_dir() and v.name != live)
        stale_tmp = [v for v in olds if v.endswith(".tmp")]
        finished = [v for v in olds if not v.endswith(".tmp")]
        drop = stale_tmp + (finished[: -self.keep_old] if self.keep_old else finished)
        for v in drop:
            shutil.rmtree(self._vdir(v), ignore_errors=True)

    def _require_version(self) -> str:
        v = self.current_version()
        if v is None or not self._vdir(v).exists():
            raise NotFoundError(
                f"no embedded index in {self.root}; build one with `shoprank index --catalog PATH`"
            )
        return v

    def upsert(self, products: Sequence[Product], vectors: np.ndarray) -> WriteReport:
        t0 = time.perf_counter()
        with self._lock():
            v = self._require_version()
            m = Manifest.load(self._vdir(v) / "manifest.json")
            _check_vectors(products, vectors, m.dimension)
            self._append(
                v,
                [
                    {"op": "upsert", "product": p.to_dict(), "vector": [float(x) for x in vec]}
                    for p, vec in zip(products, vectors, strict=True)
                ],
            )
        return WriteReport(indexed=len(products), target=v, seconds=time.perf_counter() - t0)

    def delete(self, ids: Sequence[str]) -> WriteReport:
        t0 = time.perf_counter()
        with self._lock():
            v = self._require_version()
            known = {p.id for p in self._load(v).products}
            present = [i for i in ids if i in known]
            errors = [DocError(i, "not found") for i in ids if i not in known]
            self._append(v, [{"op": "delete", "id": i} for i in present])
        return WriteReport(deleted=len(present), errors=errors, target=v, seconds=time.perf_counter() - t0)

    def manifest(self) -> Manifest | None:
        v = self.current_version()
        if v is None:
            return None
        return Manifest.load(self._vdir(v) / "manifest.json")

    # -- reading ------------------------------------------------------------------------------
    def load(self) -> EmbeddedSnapshot:
        return self._load(self._require_version())

    def _load(self, version: str) -> EmbeddedSnapshot:
        d = self._vdir(version)
        manifest = Manifest.load(d / "manifest.json")
        try:
            with open(d / "products.jsonl", encoding="utf-8") as fh:
                products = [Product.from_dict(json.loads(line)) for line in fh if line.strip()]
            vectors = np.load(d / "vectors.npy")
        except (OSError, ValueError, KeyError) as exc:
            raise IndexMismatchError(
                f"embedded index {d} is damaged ({exc}); rebuild it with `shoprank index`"
            ) from exc
        if catalog_hash(products) != manifest.catalog_hash:
            raise IndexMismatchError(
                f"embedded index {d}: products.jsonl does not match the catalog hash in its manifest "
                "(the file was changed or damaged after the build); rebuild it with `shoprank index`"
            )
        if vectors.shape != (len(products), manifest.dimension):
            raise IndexMismatchError(
                f"embedded index {d}: vectors {vectors.shape} do not fit {len(products)} products × "
                f"{manifest.dimension}; rebuild it with `shoprank index`"
            )
        by_id = {p.id: i for i, p in enumerate(products)}
        rows = list(vectors)
        alive = [True] * len(products)
        for rec in self._read_log(version):
            if rec["op"] == "upsert":
                p = Product.from_dict(rec["product"])
                vec = np.asarray(rec["vector"], dtype=np.float32)
                if p.id in by_id:
                    i = by_id[p.id]
                    products[i], rows[i], alive[i] = p, vec, True
                else:
                    by_id[p.id] = len(products)
                    products.append(p)
                    rows.append(vec)
                    alive.append(True)
            elif rec["op"] == "delete" and rec["id"] in by_id:
                alive[by_id[rec["id"]]] = False
        keep = [i for i, a in enumerate(alive) if a]
        mat = (
            np.vstack([rows[i] for i in keep]).astype(np.float32)
            if keep
            else np.zeros((0, manifest.dimension), np.float32)
        )
        return EmbeddedSnapshot(version, manifest, [products[i] for i in keep], mat)

    def _read_log(self, version: str) -> Iterator[dict]:
        for _, rec in read_records(self._vdir(version) / "updates.jsonl", "update record"):
            yield rec

    def _append(self, version: str, records: list[dict]) -> None:
        append_records(self._vdir(version) / "updates.jsonl", records)


def _check_vectors(products: Sequence[Product], vectors: np.ndarray, dimension: int) -> None:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(products):
        raise BadInputError(
            f"got {vectors.shape[0] if vectors.ndim else 0} vectors for {len(products)} products"
        )
    if vectors.shape[1] != dimension:
        raise BadInputError(
            f"vectors are {vectors.shape[1]}-d but the index is {dimension}-d; use the index's model"
        )
    if not np.all(np.isfinite(vectors)):
        raise BadInputError("vectors contain NaN or infinity")
