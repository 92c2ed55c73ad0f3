"""The OpenSearch writer: versioned indices behind an alias, swapped atomically after a full build.

A build writes ``<alias>-v<UTC yyyymmddHHMMSSmmm>``, checks that every product went in, then moves
the alias in one ``_aliases`` call. A failed build deletes its own index and leaves the alias (and
what it serves) untouched. Product writes through the API are kept in ``<alias>-updates`` as well,
and a build replays them around the swap, so none acknowledged is lost (``indexer.opensearch.updates``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from indexer.base import DocError, WriteReport
from indexer.carry import Carried, Reembed, Write, carry, embedding_of
from indexer.errors import BackendUnavailableError, BadInputError, IndexMismatchError, NotFoundError
from indexer.manifest import Manifest
from indexer.opensearch.client import client_url, os_errors, translate
from indexer.opensearch.mapping import META_KEY, index_body
from indexer.opensearch.updates import Mark, UpdateLog, delete_entry, upsert_entry
from indexer.product import Product, check_batch
from indexer.schema import document, product_from_document

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
    carries_updates = True

    def __init__(
        self,
        client: Any,
        alias: str = "shoprank-products",
        *,
        chunk_size: int = 500,
        keep_old: int = 1,
        shards: int = 1,
        replicas: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        if not _NAME.match(alias) or len(alias) > 200:
            raise BadInputError(
                f"invalid OpenSearch alias {alias!r}: use lowercase letters, digits, '-', '_', '.'"
            )
        if chunk_size < 1 or keep_old < 0:
            raise BadInputError(f"need chunk_size >= 1 and keep_old >= 0, got {chunk_size} and {keep_old}")
        if shards < 1 or (replicas is not None and replicas < 0):
            raise BadInputError(
                f"need shards >= 1 and replicas >= 0 (or None: automatic), got {shards} and {replicas}"
            )
        self.client = client
        self.alias = alias
        self.chunk_size = chunk_size
        self.keep_old = keep_old
        self.shards = shards
        self.replicas = replicas
        self._clock = clock or (lambda: datetime.now(UTC))
        self.url = client_url(client)
        self.updates = UpdateLog(client, alias, self.url, replicas=replicas)
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
        self,
        products: Sequence[Product],
        vectors: np.ndarray,
        manifest: Manifest,
        *,
        progress: bool = False,
        reembed: Reembed | None = None,
        carry_updates: bool = True,
    ) -> WriteReport:
        """Index ``products`` into a new version and move the alias to it, with the API writes of
        the update log replayed before and after the swap (``carry_updates``; ``reembed``
        embeds them again when the model changed)."""
        t0 = time.perf_counter()
        arr = _check_vectors(products, vectors, manifest.dimension)
        check_batch(products)
        marks: dict[str, Mark] | None = None
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
            expected = {p.id for p in products}
            if not report.errors and carry_updates:
                marks, carried = self._carry_into(name, products, manifest, reembed, report)
                expected = (expected | {p.id for p in carried.upserts}) - set(carried.deletes)
            if not report.errors:
                with os_errors(self.url, f"refreshing {name!r}"):
                    self.client.indices.refresh(index=name)
                    count = int(self.client.count(index=name)["count"])
                if count != len(expected):
                    report.errors.append(
                        DocError("", f"index holds {count} documents, expected {len(expected)}")
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
        if marks is not None:
            self._catch_up(name, marks, manifest, reembed)
        self._prune(name)
        report.seconds = time.perf_counter() - t0
        log.info(
            "alias %r now serves %s (%d products, %.1fs)", self.alias, name, report.indexed, report.seconds
        )
        return report

    # -- carrying the update log into a build (indexer.opensearch.updates says why it is safe) ----
    def _carry_into(
        self,
        name: str,
        products: Sequence[Product],
        new: Manifest,
        reembed: Reembed | None,
        report: WriteReport,
    ) -> tuple[dict[str, Mark], Carried]:
        """Replay the whole update log into the new (not yet served) index; the log's marks.
        (Every log entry names the model of its vector, so no live manifest is needed.)"""
        marks = self.updates.marks()
        last = self.updates.fetch(list(marks)) if marks else {}
        carried = carry(last, products, live=new, new=new, reembed=reembed, where=self.alias)
        actions: list[dict[str, Any]] = [
            {"_id": p.id, "_source": _doc(p, v)}
            for p, v in zip(carried.upserts, carried.vectors, strict=True)
        ]
        actions += [{"_op_type": "delete", "_id": i} for i in carried.deletes]
        if actions:
            self._bulk(name, actions, len(actions), report, what="replaying the update log")
            report.indexed -= len(carried.upserts)  # the report counts the catalog's products
            report.deleted -= len(carried.deletes)
        return marks, carried

    def _catch_up(self, name: str, marks: dict[str, Mark], new: Manifest, reembed: Reembed | None) -> None:
        """After the swap: replay the log entries written since ``marks`` (they reached the old
        index), never over a newer write (conditional on the document's ``_seq_no``)."""
        now = self.updates.marks()
        pending = [pid for pid, m in now.items() if marks.get(pid) != m]
        for _ in range(5):
            if not pending:
                return
            pending = self._replay(name, pending, new, reembed)
        log.error(
            "%d product write(s) kept conflicting while replaying them into %s after the swap "
            "(first: %s); resend them",
            len(pending),
            name,
            pending[:5],
        )

    def _replay(self, name: str, ids: list[str], new: Manifest, reembed: Reembed | None) -> list[str]:
        """One conditional replay of ``ids`` into ``name``; the ids that met a newer write."""
        from opensearchpy.helpers import streaming_bulk

        current: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), self.chunk_size):
            with os_errors(self.url, f"reading {name!r}"):
                resp = self.client.mget(index=name, body={"ids": ids[start : start + self.chunk_size]})
            current.update({str(d["_id"]): d for d in resp.get("docs") or [] if d.get("found")})
        writes = self.updates.fetch(ids)  # read after the documents: a later write bumps _seq_no
        fresh = self._reembedded(list(writes.values()), new, reembed)
        actions = [
            a for a in (self._replay_action(w, current.get(w.id), fresh) for w in writes.values()) if a
        ]
        conflicts: list[str] = []
        if not actions:
            return conflicts
        with os_errors(self.url, f"replaying the update log into {name!r}"):
            for ok, result in streaming_bulk(
                self.client,
                actions,
                index=name,
                raise_on_error=False,
                raise_on_exception=False,
                refresh="wait_for",
            ):
                item = next(iter(result.values()))
                if ok:
                    continue
                if item.get("status") == 409:
                    conflicts.append(str(item.get("_id")))
                elif not (item.get("status") == 404 and item.get("result") == "not_found"):
                    log.warning("replaying %s into %s failed: %s", item.get("_id"), name, _bulk_reason(item))
        return conflicts

    def _reembedded(
        self, writes: list[Write], new: Manifest, reembed: Reembed | None
    ) -> dict[str, np.ndarray]:
        """New vectors for the upserts embedded with another model than ``new``'s."""
        stale = [w for w in writes if w.product is not None and w.model != embedding_of(new)]
        if not stale:
            return {}
        if reembed is None:
            log.error(
                "%d product write(s) in %s were embedded with another model and cannot be replayed "
                "into the new index without re-embedding; run `shoprank index` again",
                len(stale),
                self.updates.index,
            )
            return {w.id: np.full(new.dimension, np.nan, dtype=np.float32) for w in stale}
        vectors = reembed([w.product for w in stale if w.product is not None])
        return {w.id: np.asarray(v, dtype=np.float32) for w, v in zip(stale, vectors, strict=True)}

    @staticmethod
    def _replay_action(
        w: Write, doc: dict[str, Any] | None, fresh: dict[str, np.ndarray]
    ) -> dict[str, Any] | None:
        guard = {} if doc is None else {"if_seq_no": doc["_seq_no"], "if_primary_term": doc["_primary_term"]}
        if w.product is None:
            return None if doc is None else {"_op_type": "delete", "_id": w.id, **guard}
        if (
            doc is not None
            and product_from_document(doc["_source"]).content_hash() == w.product.content_hash()
        ):
            return None  # already there
        vector = np.asarray(fresh.get(w.id, w.vector), dtype=np.float32)
        if not np.all(np.isfinite(vector)):
            return None  # could not be re-embedded (logged)
        source = _doc(w.product, vector)
        return {"_op_type": "index" if doc is not None else "create", "_id": w.id, "_source": source, **guard}

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
        """The batch into the update log, then into the live index (a 503 in between: resend it)."""
        t0 = time.perf_counter()
        check_batch(products)
        _, manifest = self._live()
        arr = _check_vectors(products, vectors, manifest.dimension)
        report = WriteReport(target=self.alias)
        if products:
            self.updates.record(
                (p.id, upsert_entry(p, v, manifest)) for p, v in zip(products, arr, strict=True)
            )
            actions = ({"_id": p.id, "_source": _doc(p, v)} for p, v in zip(products, arr, strict=True))
            self._bulk(self.alias, actions, len(products), report, what="upserting", refresh="wait_for")
        report.seconds = time.perf_counter() - t0
        return report

    def delete(self, ids: Sequence[str]) -> WriteReport:
        t0 = time.perf_counter()
        ids = list(dict.fromkeys(str(i) for i in ids))
        self._live()
        report = WriteReport(target=self.alias)
        if ids:
            self.updates.record((i, delete_entry()) for i in ids)
            actions = ({"_op_type": "delete", "_id": str(i)} for i in ids)
            self._bulk(self.alias, actions, len(ids), report, what="deleting", refresh="wait_for")
        report.seconds = time.perf_counter() - t0
        return report

    def drop(self) -> list[str]:
        """Delete the alias, every version of it and its update log (returns the deleted names)."""
        names = sorted(set(self.versions()) | set(alias_indices(self.client, self.alias, self.url)))
        if names:
            with os_errors(self.url, f"dropping {self.alias!r}"):
                self.client.indices.delete(index=",".join(names))
        return names + self.updates.drop()
