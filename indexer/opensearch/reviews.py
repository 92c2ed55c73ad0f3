"""Reviews on OpenSearch: one document per review in ``<alias>-reviews``, aggregates on the products.

Reviews are created with their content hash as ``_id`` (``op_type=create``), so a review sent twice
is a 409 the store counts as a duplicate. After new reviews land, the touched products' aggregates
are recomputed by a ``terms`` aggregation over the reviews index (exact sums and counts, so the
result never depends on how often ingestion ran) and written into the product documents' ``reviews``
object with partial updates. ``publish()`` with no ids re-applies every aggregate, which a product
index rebuild needs (the new index starts from the catalog, the reviews index is kept).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from indexer.base import DocError
from indexer.opensearch.client import client_url, ensure_index, os_errors
from indexer.opensearch.mapping import AUTO_REPLICAS, REVIEWS_FIELD, reviews_mapping
from indexer.reviews import Review, ReviewPrior, ReviewStats, ReviewWriteReport

log = logging.getLogger(__name__)


def review_index_body() -> dict[str, Any]:
    """The reviews index body (fresh each call)."""
    return {
        "settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": AUTO_REPLICAS}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "id": {"type": "keyword"},
                "product_id": {"type": "keyword"},
                "text": {"type": "text", "index": False},
                "rating": {"type": "float"},
                "date": {"type": "keyword"},
                "sentiment": {"type": "float"},
            },
        },
    }


def review_aggs() -> dict[str, Any]:
    """The per-product sums the aggregate is rebuilt from (fresh each call)."""
    return {
        "sentiment_sum": {"sum": {"field": "sentiment"}},
        "rating_count": {"value_count": {"field": "rating"}},
        "rating_sum": {"sum": {"field": "rating"}},
    }


PAGE = 500


class OpenSearchReviewStore:
    name = "opensearch"

    def __init__(self, client: Any, *, alias: str, prior: ReviewPrior | None = None):
        self.client = client
        self.alias = alias
        self.index = f"{alias}-reviews"
        self.prior = prior or ReviewPrior()
        self.url = client_url(client)
        self._mapped = False  # the reviews field put into the product mapping by this store

    def ensure_index(self) -> None:
        ensure_index(self.client, self.index, review_index_body(), self.url)

    def add(self, reviews: Sequence[Review]) -> ReviewWriteReport:
        """Store scored reviews (duplicates skipped), then refresh the touched products' aggregates."""
        from opensearchpy.helpers import streaming_bulk

        t0 = time.perf_counter()
        self.ensure_index()
        report = ReviewWriteReport()
        touched: set[str] = set()
        actions = (
            {"_op_type": "create", "_id": r.id, "_source": r.to_dict()}
            for r in {r.id: r for r in reviews}.values()
        )
        by_id = {r.id: r for r in reviews}
        with os_errors(self.url, f"writing reviews into {self.index!r}"):
            for ok, result in streaming_bulk(
                self.client,
                actions,
                index=self.index,
                raise_on_error=False,
                raise_on_exception=False,
                refresh="wait_for",
            ):
                item = next(iter(result.values()))
                if ok:
                    report.added += 1
                    touched.add(by_id[str(item["_id"])].product_id)
                elif item.get("status") == 409:
                    report.duplicates += 1
                else:
                    raise_review_error(item)
        report.duplicates += len(reviews) - len(by_id)
        report.products = sorted(touched)
        if touched:
            errors = self.publish(report.products)
            if errors:
                log.warning("%d product aggregates not written (first: %s)", len(errors), errors[0])
        report.seconds = time.perf_counter() - t0
        return report

    def stats(self, ids: Sequence[str] | None = None) -> dict[str, ReviewStats]:
        """Aggregates from the reviews index (all reviewed products when ``ids`` is None)."""
        if not self.client.indices.exists(index=self.index):
            return {}
        return dict(self._aggregate(ids))

    def _aggregate(self, ids: Sequence[str] | None) -> Iterator[tuple[str, ReviewStats]]:
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {
                "size": PAGE,
                "sources": [{"product": {"terms": {"field": "product_id"}}}],
            }
            if after:
                composite["after"] = after
            body: dict[str, Any] = {
                "size": 0,
                "aggs": {"products": {"composite": composite, "aggs": review_aggs()}},
            }
            if ids is not None:
                body["query"] = {"terms": {"product_id": list(ids)}}
            with os_errors(self.url, f"aggregating {self.index!r}"):
                resp = self.client.search(index=self.index, body=body)
            agg = resp["aggregations"]["products"]
            for b in agg["buckets"]:
                yield (
                    str(b["key"]["product"]),
                    ReviewStats(
                        int(b["doc_count"]),
                        float(b["sentiment_sum"]["value"]),
                        int(b["rating_count"]["value"]),
                        float(b["rating_sum"]["value"]),
                    ),
                )
            after = agg.get("after_key")
            if not after or len(agg["buckets"]) < PAGE:
                return

    def publish(self, ids: Sequence[str] | None = None) -> list[DocError]:
        """Write the aggregates of ``ids`` (or of every reviewed product) into the product index."""
        from opensearchpy.helpers import streaming_bulk

        stats = self.stats(ids)
        if not stats:
            return []
        if not self._mapped:
            with os_errors(self.url, f"adding the reviews field to {self.alias!r}"):
                # Additive and idempotent: indices built before reviews existed gain the field.
                # Once per store: a mapping change is a cluster-state update (it waits for the
                # cluster manager), and every version built since has the field in its body.
                self.client.indices.put_mapping(
                    index=self.alias, body={"properties": {REVIEWS_FIELD: reviews_mapping()}}
                )
            self._mapped = True
        actions = (
            {"_op_type": "update", "_id": pid, "doc": {REVIEWS_FIELD: s.to_dict(self.prior)}}
            for pid, s in sorted(stats.items())
        )
        errors: list[DocError] = []
        with os_errors(self.url, f"updating review aggregates in {self.alias!r}"):
            for ok, result in streaming_bulk(
                self.client,
                actions,
                index=self.alias,
                raise_on_error=False,
                raise_on_exception=False,
                refresh="wait_for",
            ):
                if not ok:
                    item = next(iter(result.values()))
                    reason = (
                        "product not in the index" if item.get("status") == 404 else str(item.get("error"))
                    )
                    errors.append(DocError(str(item.get("_id", "")), reason))
        return errors


def raise_review_error(item: dict[str, Any]) -> None:
    from indexer.errors import BadInputError

    raise BadInputError(f"OpenSearch refused review {item.get('_id')}: {item.get('error')}")
