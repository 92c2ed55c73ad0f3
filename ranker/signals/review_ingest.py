"""``shoprank reviews ingest``: score new reviews' sentiment, store them, update product aggregates.

Reviews of products the index does not hold are reported and not stored (ingest the product
first); everything else is scored in batches by the sentiment model, written to the backend's
review store (duplicates skipped), and the touched products' aggregates are republished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from indexer.base import DocError
from indexer.reviews import Review, ReviewStore
from ranker.signals.sentiment import SentimentModel

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    read: int = 0
    added: int = 0
    duplicates: int = 0
    products: int = 0
    errors: list[DocError] = field(default_factory=list)
    seconds: float = 0.0


def ingest_reviews(
    reviews: Sequence[Review],
    *,
    model: SentimentModel,
    store: ReviewStore,
    known_products: Callable[[list[str]], set[str]],
    batch_size: int = 256,
    progress: bool = False,
) -> IngestReport:
    t0 = time.perf_counter()
    report = IngestReport(read=len(reviews))
    ids = sorted({r.product_id for r in reviews})
    known = known_products(ids)
    missing = set(ids) - known
    if missing:
        report.errors += [
            DocError(pid, "no such product in the index; add it with `shoprank upsert` first")
            for pid in sorted(missing)
        ]
    todo = [r for r in reviews if r.product_id in known]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="review", desc="sentiment")
    scored: list[Review] = []
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        scores = model.score([r.text for r in chunk])
        scored += [replace(r, sentiment=round(float(s), 6)) for r, s in zip(chunk, scores, strict=True)]
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    written = store.add(scored)
    report.added, report.duplicates, report.products = (
        written.added,
        written.duplicates,
        len(written.products),
    )
    report.seconds = time.perf_counter() - t0
    log.info(
        "reviews: %d read, %d added, %d duplicates, %d products updated, %d errors",
        report.read,
        report.added,
        report.duplicates,
        report.products,
        len(report.errors),
    )
    return report
