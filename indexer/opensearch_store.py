"""The OpenSearch writer: versioned indices behind an alias, swapped atomically after a full build.

A build writes ``<alias>-v<UTC yyyymmddHHMMSSmmm>``, checks that every product went in, then moves
the alias in one ``_aliases`` call. A failed build deletes its own index and leaves the alias (and
what it serves) untouched.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from indexer.base import DocError, WriteReport
from indexer.errors import BackendUnavailableError, BadInputError, IndexMismatchError, NotFoundError
from indexer.manifest import Manifest
from indexer.opensearch_client import client_url, os_errors, translate
from indexer.opensearch_mapping import META_KEY, index_body
from indexer.product import Product
from indexer.schema import document

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


def _missing(resp: Any) -> bool:
    """A 404 answer returned (not raised) because the call passed ``ignore=404``."""
    return isinstance(resp, dict) and resp.get("status") == 404 and "error" in resp


def alias_indices(client: Any, alias: str, url: str) -> dict[str, bool]:
    """The indices behind ``alias`` → whether each is the write index ({} when the alias is absent)."""
    with os_errors(url, f"reading alias {alias!r}"):
        resp = client.indices.get_alias(name=alias, ignore=404)
    if _missing(resp):
        return {}
    return {
        index: bool((spec.get("aliases") or {}).get(alias, {}).get("is_write_index", False))
        for index, spec in resp.items()
    }


def pick_current(indices: dict[str, bool]) -> str | None:
    """The write index if one is marked, else the newest name."""
    writers = sorted(i for i, w in indices.items() if w)
    if writers:
        return writers[-1]
    return max(indices) if indices else None


def read_manifest(client: Any, alias: str, url: str) -> Manifest | None:
    """The manifest in ``_meta`` of the index behind ``alias``; None when the alias does not exist."""
    index = pick_current(alias_indices(client, alias, url))
    if index is None:
        return None
    with os_errors(url, f"reading the mapping of {index!r}"):
        resp = client.indices.get_mapping(index=index, ignore=404)
    if _missing(resp):
        return None
    meta = ((resp.get(index) or {}).get("mappings") or {}).get("_meta") or {}
    if META_KEY not in meta:
        raise IndexMismatchError(
            f"OpenSearch index {index!r} (alias {alias!r}) has no shoprank manifest; "
            "it was not built by shoprank, rebuild it with `shoprank index`"
        )
    return Manifest.from_dict(meta[META_KEY], where=f"OpenSearch index {index!r}")


def _bulk_reason(item: dict[str, Any]) -> str:
    err = item.get("error")
    if isinstance(err, dict):
        reason = f"{err.get('type', 'error')}: {err.get('reason', '')}".strip()
        cause = err.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
        return reason
    if err:
        return str(err)
    if item.get("result") == "not_found" or item.get("status") == 404:
        return "not found"
    return f"failed with status {item.get('status')}"


def _check_vectors(products: Sequence[Product], vectors: np.ndarray, dimension: int) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != len(products):
        raise BadInputError(
            f"need one vector per product: {len(products)} products, vectors of shape {arr.shape}"
        )
    if len(products) and arr.shape[1] != dimension:
        raise BadInputError(
            f"vectors have dimension {arr.shape[1]} but the index is built for {dimension}; "
            "embed with the manifest's model or rebuild with `shoprank index`"
        )
    if not np.isfinite(arr).all():
        raise BadInputError("vectors contain NaN or infinite values")
    return arr


def _doc(p: Product, v: np.ndarray) -> dict[str, Any]:
    # lucene's cosinesimil refuses zero vectors; such a product is searchable by text only
    return document(p, v if np.any(v) else None)


class OpenSearchStore:
    """:class:`~indexer.base.IndexStore` on OpenSearch: versioned indices behind one alias."""

    name = "opensearch"

    def __init__(
        self,
        client: Any,
        alias: str = "shoprank-products",
        *,
        chunk_size: int = 500,
        keep_old: int = 1,
        shards: int = 1,
        replicas: int = 0,
        clock: Callable[[], datetime] | None = None,
    ):
        if not _NAME.match(alias) or len(alias) > 200:
            raise BadInputError(
                f"invalid OpenSearch alias {alias!r}: use lowercase letters, digits, '-', '_', '.'"
            )
        if chunk_size < 1 or keep_old < 0:
            raise BadInputError(f"need chunk_size >= 1 and keep_old >= 0, got {chunk_size} and {keep_old}")
        self.client = client
        self.alias = alias
        self.chunk_size = chunk_size
        self.keep_old = keep_old
        self.shards = shards
        self.replicas = replicas
        self._clock = clock or (lambda: datetime.now(UTC))
        self.url = client_url(client)
        self._version = re.compile(rf"^{re.escape(alias)}-v\d{{17}}$")

    # -- reading ------------------------------------------------------------------------------
    def current_index(self) -> str | None:
        return pick_current(alias_indices(self.client, self.alias, self.url))

    def versions(self) -> list[str]:
        """Every ``<alias>-v…`` index, oldest first."""
        with os_errors(self.url, "listing index versions"):
            resp = self.client.indices.get_alias(index=f"{self.alias}-v*")
        return sorted(name for name in resp if self._version.match(name))

    def manifest(self) -> Manifest | None:
        return read_manifest(self.client, self.alias, self.url)

    # -- building -----------------------------------------------------------------------------
    def _new_name(self) -> str:
        now = self._clock().astimezone(UTC)
        existing = set(self.versions())
        while True:
            name = f"{self.alias}-v{now:%Y%m%d%H%M%S}{now.microsecond // 1000:03d}"
            if name not in existing:
                return name
            now += timedelta(milliseconds=1)

    def build(
        self, products: Sequence[Product], vectors: np.ndarray, manifest: Manifest, *, progress: bool = False
    ) -> WriteReport:
        t0 = time.perf_counter()
        arr = _check_vectors(products, vectors, manifest.dimension)
        dupes = [i for i, c in Counter(p.id for p in products).items() if c > 1]
        if dupes:
            raise BadInputError(f"{len(dupes)} product id(s) occur more than once, e.g. {sorted(dupes)[:5]}")
        if manifest.documents != len(products):
            log.warning("manifest says %d documents, building %d", manifest.documents, len(products))
        body = index_body(manifest.dimension, manifest, shards=self.shards, replicas=self.replicas)
        name = self._new_name()
        report = WriteReport(target=name)
        with os_errors(self.url, f"creating index {name!r}"):
            self.client.indices.create(index=name, body=body)
        log.info("building %s with %d products", name, len(products))
        try:
            actions = ({"_id": p.id, "_source": _doc(p, v)} for p, v in zip(products, arr, strict=True))
            self._bulk(name, actions, len(products), report, progress=progress, what="indexing")
            if not report.errors:
                with os_errors(self.url, f"refreshing {name!r}"):
                    self.client.indices.refresh(index=name)
                    count = int(self.client.count(index=name)["count"])
                if count != len(products):
                    report.errors.append(
                        DocError("", f"index holds {count} documents, expected {len(products)}")
                    )
        except BaseException:
            self._delete_quietly(name)
            raise
        if report.errors:
            log.warning(
                "build of %s failed (%d errors, first: %s); deleted it, alias %r unchanged",
                name,
                len(report.errors),
                report.errors[0],
                self.alias,
            )
            self._delete_quietly(name)
            report.seconds = time.perf_counter() - t0
            return report
        self._swap(name)
        self._prune(name)
        report.seconds = time.perf_counter() - t0
        log.info(
            "alias %r now serves %s (%d products, %.1fs)", self.alias, name, report.indexed, report.seconds
        )
        return report

    def _swap(self, name: str) -> None:
        """Move the alias to ``name`` in one ``_aliases`` call (readers never see a gap)."""
        try:
            old = alias_indices(self.client, self.alias, self.url)
            actions: list[dict[str, Any]] = [
                {"remove": {"index": i, "alias": self.alias}} for i in sorted(old)
            ]
            actions.append({"add": {"index": name, "alias": self.alias, "is_write_index": True}})
            with os_errors(self.url, f"moving alias {self.alias!r} to {name!r}"):
                self.client.indices.update_aliases(body={"actions": actions})
        except BaseException:
            # a timed-out swap may still have happened: only delete the new index if it serves nothing
            serves = self._serves(name)
            if serves:
                log.warning("the alias swap to %s reported an error but happened", name)
                return
            if serves is None:
                log.error(
                    "could not tell whether alias %r moved to %s; left that index in place", self.alias, name
                )
            else:
                self._delete_quietly(name)
            raise

    def _serves(self, name: str) -> bool | None:
        """Whether the alias points at ``name`` (None when the node cannot say)."""
        try:
            return name in alias_indices(self.client, self.alias, self.url)
        except Exception:
            return None

    def _prune(self, new: str) -> None:
        """Delete versions older than the newest ``keep_old`` previous ones (failures only logged)."""
        try:
            previous = [v for v in self.versions() if v != new]
            doomed = previous[: max(0, len(previous) - self.keep_old)]
            if doomed:
                with os_errors(self.url, "deleting old index versions"):
                    self.client.indices.delete(index=",".join(doomed))
                log.info("deleted old versions %s", doomed)
        except Exception as exc:  # the build itself succeeded; a leftover index is harmless
            log.warning("could not delete old versions of %r: %s", self.alias, exc)

    def _delete_quietly(self, name: str) -> None:
        try:
            with os_errors(self.url, f"deleting {name!r}"):
                self.client.indices.delete(index=name)
        except Exception as exc:
            log.error("could not delete the unfinished index %s: %s; delete it by hand", name, exc)

    def _bulk(
        self,
        index: str,
        actions: Iterable[dict[str, Any]],
        total: int,
        report: WriteReport,
        *,
        progress: bool = False,
        what: str = "indexing",
        **params: Any,
    ) -> None:
        from opensearchpy.helpers import streaming_bulk

        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="doc", desc=what)
        try:
            with os_errors(self.url, f"{what} into {index!r}"):
                results: Iterator[tuple[bool, dict[str, Any]]] = streaming_bulk(
                    self.client,
                    actions,
                    chunk_size=self.chunk_size,
                    raise_on_error=False,
                    raise_on_exception=False,
                    max_retries=2,
                    initial_backoff=1,
                    index=index,
                    **params,
                )
                for ok, result in results:
                    op, item = next(iter(result.items()))
                    if ok:
                        if op == "delete":
                            report.deleted += 1
                        else:
                            report.indexed += 1
                    else:
                        exc = item.get("exception")
                        if isinstance(exc, Exception):
                            mapped = translate(exc, self.url, f"{what} into {index!r}")
                            if isinstance(mapped, BackendUnavailableError):
                                raise mapped from exc  # the node is gone: not a per-document problem
                        report.errors.append(DocError(str(item.get("_id", "")), _bulk_reason(item)))
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    # -- single changes -----------------------------------------------------------------------
    def _live(self) -> tuple[str, Manifest]:
        index = self.current_index()
        manifest = self.manifest()
        if index is None or manifest is None:
            raise NotFoundError(
                f"OpenSearch alias {self.alias!r} does not exist at {self.url}; build the index first with "
                "`shoprank index`"
            )
        return index, manifest

    def upsert(self, products: Sequence[Product], vectors: np.ndarray) -> WriteReport:
        t0 = time.perf_counter()
        _, manifest = self._live()
        arr = _check_vectors(products, vectors, manifest.dimension)
        report = WriteReport(target=self.alias)
        if products:
            actions = ({"_id": p.id, "_source": _doc(p, v)} for p, v in zip(products, arr, strict=True))
            self._bulk(self.alias, actions, len(products), report, what="upserting", refresh="wait_for")
        report.seconds = time.perf_counter() - t0
        return report

    def delete(self, ids: Sequence[str]) -> WriteReport:
        t0 = time.perf_counter()
        self._live()
        report = WriteReport(target=self.alias)
        if ids:
            actions = ({"_op_type": "delete", "_id": str(i)} for i in ids)
            self._bulk(self.alias, actions, len(ids), report, what="deleting", refresh="wait_for")
        report.seconds = time.perf_counter() - t0
        return report

    def drop(self) -> list[str]:
        """Delete the alias and every version of it (returns the deleted index names)."""
        names = sorted(set(self.versions()) | set(alias_indices(self.client, self.alias, self.url)))
        if names:
            with os_errors(self.url, f"dropping {self.alias!r}"):
                self.client.indices.delete(index=",".join(names))
        return names
