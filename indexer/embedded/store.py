"""The embedded index on disk: versioned folders, an atomic CURRENT pointer, and an update log.

Layout::

    <root>/CURRENT                       name of the live version (replaced atomically)
    <root>/.lock                         flock: writers and the switch hold it exclusively
    <root>/versions/<v>/manifest.json    schema version, model id, dimension, catalog hash, ...
    <root>/versions/<v>/products.jsonl   one Product per line
    <root>/versions/<v>/vectors.npy      float32 [documents × dimension], rows aligned with products
    <root>/versions/<v>/updates.jsonl    append-only upserts/deletes since the build (fsync'ed)

A build writes a complete new version and only then switches CURRENT, so readers never see a
half-built index and a failed build loses nothing. The switch happens under the store's lock,
and it first copies the live version's update log into the new version (``indexer.carry``), so
every write acknowledged before the switch is in the new version; every write after it goes to
the new version, since writers append under the same lock to the version CURRENT names. One
write batch is one log line: a torn line (a crash mid-append) is skipped whole, so a batch is on
disk entirely or not at all. Older versions beyond ``keep_old`` are removed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from indexer.base import DocError, WriteReport
from indexer.carry import Carried, Reembed, Write, carry
from indexer.durable_log import FileLock, append_records, fsync_dir, read_records
from indexer.errors import BadInputError, IndexMismatchError, NotFoundError
from indexer.manifest import Manifest
from indexer.product import Product, catalog_hash, check_batch

log = logging.getLogger(__name__)

_BUILDING = ".building"  # flock'ed by a live build inside its .tmp folder


@dataclass(frozen=True)
class Stamp:
    """Which state of the store something reflects: the live version and its log's length."""

    version: str
    log_bytes: int


@dataclass
class EmbeddedSnapshot:
    """The live version, with the update log applied."""

    version: str
    manifest: Manifest
    products: list[Product]
    vectors: np.ndarray
    log_bytes: int = 0

    @property
    def stamp(self) -> Stamp:
        return Stamp(self.version, self.log_bytes)


def upsert_records(products: Sequence[Product], vectors: np.ndarray) -> list[dict[str, Any]]:
    return [
        {"op": "upsert", "product": p.to_dict(), "vector": [float(x) for x in vec]}
        for p, vec in zip(products, np.asarray(vectors, dtype=np.float32), strict=True)
    ]


def delete_records(ids: Sequence[str]) -> list[dict[str, Any]]:
    return [{"op": "delete", "id": i} for i in ids]


class EmbeddedStore:
    name = "embedded"
    carries_updates = True

    def __init__(self, root: str | Path, *, keep_old: int = 1):
        self.root = Path(root)
        self.keep_old = keep_old

    # -- paths --------------------------------------------------------------------------------
    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def current_version(self) -> str | None:
        try:
            v = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return v or None

    def _vdir(self, version: str) -> Path:
        return self.versions_dir / version

    def derived_dir(self, version: str) -> Path:
        """Where an engine serving ``version`` keeps what it derived from it (a vector graph, with
        its own manifest); removed with the version, never read by the store."""
        return self._vdir(version) / "derived"

    def _log_path(self, version: str) -> Path:
        return self._vdir(version) / "updates.jsonl"

    def log_bytes(self, version: str) -> int:
        """Length of ``version``'s update log (-1 when the version is gone)."""
        try:
            return self._log_path(version).stat().st_size
        except FileNotFoundError:
            return -1

    def stamp(self) -> Stamp | None:
        """What is live on disk now: two small reads, cheap enough to check once a second."""
        v = self.current_version()
        return None if v is None else Stamp(v, self.log_bytes(v))

    @contextmanager
    def locked(self, *, shared: bool = False) -> Iterator[None]:
        """The store's lock (across processes). Writers and the build's switch hold it exclusively,
        readers of a whole version shared. Not re-entrant: do not take it twice in one thread."""
        with FileLock(self.root / ".lock")(exclusive=not shared):
            yield

    # -- IndexStore ---------------------------------------------------------------------------
    def build(
        self,
        products: Sequence[Product],
        vectors: np.ndarray,
        manifest: Manifest,
        *,
        progress: bool = False,
        reembed: Reembed | None = None,
        carry_updates: bool = True,
    ) -> WriteReport:
        """Write a new version and switch to it, carrying the live version's writes over
        (``carry_updates``; ``reembed`` embeds them again when the model changed)."""
        t0 = time.perf_counter()
        check_vectors(products, vectors, manifest.dimension)
        check_batch(products)
        version = "v-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        tmp = self.versions_dir / (version + ".tmp")
        with self.locked():  # so a concurrent prune sees the folder only with its guard held
            tmp.mkdir(parents=True, exist_ok=False)
            guard = open(tmp / _BUILDING, "w")  # noqa: SIM115 - held for the whole build
            fcntl.flock(guard, fcntl.LOCK_EX)
        carried = Carried()
        try:
            with open(tmp / "products.jsonl", "w", encoding="utf-8") as fh:
                for p in products:
                    fh.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
            with open(tmp / "vectors.npy", "wb") as fh:
                np.save(fh, np.asarray(vectors, dtype=np.float32))
            manifest.save(tmp / "manifest.json")
            for name in ("products.jsonl", "vectors.npy", "manifest.json"):
                _fsync_file(tmp / name)
            with self.locked():
                if carry_updates:
                    carried = self._carry(products, manifest, reembed)
                mat = np.asarray(carried.vectors, dtype=np.float32).reshape(-1, manifest.dimension)
                records = upsert_records(carried.upserts, mat) + delete_records(carried.deletes)
                if records:
                    append_records(tmp / "updates.jsonl", [{"op": "batch", "records": records}])
                (tmp / "updates.jsonl").touch()
                fsync_dir(tmp)
                tmp.rename(self._vdir(version))
                pointer = self.root / "CURRENT.tmp"
                pointer.write_text(version + "\n")
                _fsync_file(pointer)
                os.replace(pointer, self.root / "CURRENT")
                fsync_dir(self.root)
                self._prune(version)
            with suppress(OSError):
                (self._vdir(version) / _BUILDING).unlink()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            guard.close()
        log.info(
            "embedded index %s built: %d products (+%d carried writes) in %s",
            version,
            len(products),
            len(carried),
            self.root,
        )
        return WriteReport(
            indexed=len(products), target=str(self._vdir(version)), seconds=time.perf_counter() - t0
        )

    def _carry(self, products: Sequence[Product], manifest: Manifest, reembed: Reembed | None) -> Carried:
        """The live version's writes to replay onto the new one (caller holds the lock)."""
        live = self.current_version()
        if live is None or not self._vdir(live).exists():
            return Carried()
        last: dict[str, Write] = {}
        for w in self._writes(live):
            last.pop(w.id, None)  # keep log order of each id's last write
            last[w.id] = w
        if not last:
            return Carried()
        live_manifest = Manifest.load(self._vdir(live) / "manifest.json")
        return carry(last, products, live=live_manifest, new=manifest, reembed=reembed, where=str(self.root))

    def _prune(self, live: str) -> None:
        olds = sorted(v.name for v in self.versions_dir.iterdir() if v.is_dir() and v.name != live)
        stale_tmp = [v for v in olds if v.endswith(".tmp") and not _building(self._vdir(v))]
        finished = [v for v in olds if not v.endswith(".tmp")]
        drop = stale_tmp + (finished[: -self.keep_old] if self.keep_old else finished)
        for v in drop:
            shutil.rmtree(self._vdir(v), ignore_errors=True)

    def require_version(self) -> str:
        v = self.current_version()
        if v is None or not self._vdir(v).exists():
            raise NotFoundError(
                f"no embedded index in {self.root}; build one with `shoprank index --catalog PATH`"
            )
        return v

    def append(self, version: str, records: list[dict[str, Any]]) -> int:
        """Append one batch as one fsync'ed log line (caller holds the lock); returns the log's new
        length. When the append fails, the log is cut back to where it was."""
        path = self._log_path(version)
        before = path.stat().st_size
        try:
            append_records(path, [{"op": "batch", "records": records}])
        except BaseException:
            with suppress(OSError):
                os.truncate(path, before)
            raise
        return path.stat().st_size

    def upsert(self, products: Sequence[Product], vectors: np.ndarray) -> WriteReport:
        t0 = time.perf_counter()
        check_batch(products)
        with self.locked():
            v = self.require_version()
            m = Manifest.load(self._vdir(v) / "manifest.json")
            check_vectors(products, vectors, m.dimension)
            if products:
                self.append(v, upsert_records(products, vectors))
        return WriteReport(indexed=len(products), target=v, seconds=time.perf_counter() - t0)

    def delete(self, ids: Sequence[str]) -> WriteReport:
        t0 = time.perf_counter()
        ids = list(dict.fromkeys(ids))
        with self.locked():
            v = self.require_version()
            known = {p.id for p in self.read(v).products}
            present = [i for i in ids if i in known]
            errors = [DocError(i, "not found") for i in ids if i not in known]
            if present:
                self.append(v, delete_records(present))
        return WriteReport(deleted=len(present), errors=errors, target=v, seconds=time.perf_counter() - t0)

    def manifest(self) -> Manifest | None:
        v = self.current_version()
        if v is None:
            return None
        return Manifest.load(self._vdir(v) / "manifest.json")

    # -- reading ------------------------------------------------------------------------------
    def load(self) -> EmbeddedSnapshot:
        """The live version as it is now (read under the shared lock: no write is half-seen)."""
        self.require_version()
        with self.locked(shared=True):
            return self.read(self.require_version())

    def read(self, version: str) -> EmbeddedSnapshot:
        """``version`` with its update log applied; the caller holds the lock (or accepts that a
        concurrent append may be missed, which the snapshot's ``log_bytes`` then tells)."""
        d = self._vdir(version)
        manifest = Manifest.load(d / "manifest.json")
        log_bytes = self.log_bytes(version)
        try:
            with open(d / "products.jsonl", encoding="utf-8") as fh:
                shared: dict[str, str] = {}
                products = [Product.from_dict(json.loads(line), shared) for line in fh if line.strip()]
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
        n = len(products)
        changed: dict[int, np.ndarray] = {}  # row → its new vector (rows from ``n`` on: appended)
        dead: set[int] = set()
        for w in self._writes(version):
            if w.product is not None and w.vector is not None:
                i = by_id.setdefault(w.id, len(products))
                if i == len(products):
                    products.append(w.product)
                else:
                    products[i] = w.product
                changed[i] = w.vector
                dead.discard(i)
            elif w.product is None and w.id in by_id:
                dead.add(by_id[w.id])
        if changed or dead:  # the built matrix is not copied row by row (a million rows: 1.5 GB)
            added = len(products) - n
            mat = (
                np.concatenate([vectors, np.zeros((added, manifest.dimension), np.float32)])
                if added
                else vectors
            )
            for i, v in changed.items():
                mat[i] = v
            if dead:
                keep = np.setdiff1d(np.arange(len(products)), np.fromiter(dead, dtype=np.int64))
                mat = mat[keep]
                products = [products[i] for i in keep.tolist()]
            vectors = mat
        return EmbeddedSnapshot(version, manifest, products, np.asarray(vectors, dtype=np.float32), log_bytes)

    def writes_since(self, version: str, offset: int) -> list[Write]:
        """The upserts/deletes appended to ``version``'s log after it was ``offset`` bytes long
        (a length a :class:`Stamp` gave), in order; the caller holds the lock, shared at least."""
        return list(self._writes(version, offset))

    def _writes(self, version: str, offset: int = 0) -> Iterator[Write]:
        """Every upsert/delete of the log (from byte ``offset``), batches unpacked, in order. A
        record that cannot be read is skipped with a warning: stored data never stops a start-up."""
        path = self._log_path(version)
        for n, rec in read_records(path, "update record", offset=offset):
            try:
                batch = rec["records"] if rec.get("op") == "batch" else [rec]
                writes = [_write_of(r) for r in batch]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("%s:%d: skipping an unreadable update record (%r)", path, n, exc)
                continue
            yield from writes


def _write_of(rec: dict[str, Any]) -> Write:
    if rec["op"] == "upsert":
        p = Product.from_dict(rec["product"])
        return Write(p.id, p, np.asarray(rec["vector"], dtype=np.float32))
    if rec["op"] == "delete":
        return Write(str(rec["id"]))
    raise ValueError(f"unknown op {rec['op']!r}")


def _building(folder: Path) -> bool:
    """Whether a build still works in ``folder`` (it holds the flock of the guard file)."""
    try:
        with open(folder / _BUILDING, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def check_vectors(products: Sequence[Product], vectors: np.ndarray, dimension: int) -> None:
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
