"""Product reviews: reading them, the per-product aggregate, and shrinkage towards a prior.

A review is ``{"product_id", "rating" (1-5, optional), "text", "date" (optional)}`` per JSONL line.
Each gets a sentiment score in [-1, 1] from the sentiment model when ingested. A product's
aggregate keeps sums and counts (so it updates incrementally and exactly); the values served are
Bayesian averages that shrink towards a prior when a product has few reviews::

    shrunk = (strength · prior + Σ values) / (strength + n)

so one glowing review (n = 1) stays near the prior while 200 good ones move all the way.
Reviews are identified by a hash of their content, so ingesting a file twice counts nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from indexer.errors import BadInputError, RowError

if TYPE_CHECKING:
    from indexer.base import DocError

MAX_TEXT_CHARS = 20_000


@dataclass(frozen=True)
class ReviewPrior:
    """Where a product with no reviews sits, and how many reviews it takes to move away from it."""

    sentiment: float = 0.0  # neutral
    rating: float = 3.0  # the middle star
    strength: float = 10.0  # pseudo-reviews of prior weight

    def __post_init__(self) -> None:
        if not (-1.0 <= self.sentiment <= 1.0 and 1.0 <= self.rating <= 5.0 and self.strength >= 0):
            raise BadInputError("review prior needs sentiment in [-1, 1], rating in [1, 5], strength >= 0")


def shrunk_mean(total: float, n: float, prior: float, strength: float) -> float:
    """``(strength · prior + total) / (strength + n)``; the prior when there is nothing."""
    if strength + n <= 0:
        return prior
    return (strength * prior + total) / (strength + n)


@dataclass(frozen=True)
class ReviewStats:
    """Sums and counts of one product's reviews (exact, mergeable)."""

    count: int = 0
    sentiment_sum: float = 0.0
    rating_count: int = 0
    rating_sum: float = 0.0

    def add(self, sentiment: float, rating: float | None) -> ReviewStats:
        return ReviewStats(
            self.count + 1,
            self.sentiment_sum + float(sentiment),
            self.rating_count + (rating is not None),
            self.rating_sum + (float(rating) if rating is not None else 0.0),
        )

    def sentiment(self, prior: ReviewPrior) -> float:
        return shrunk_mean(self.sentiment_sum, self.count, prior.sentiment, prior.strength)

    def rating(self, prior: ReviewPrior) -> float:
        return shrunk_mean(self.rating_sum, self.rating_count, prior.rating, prior.strength)

    def to_dict(self, prior: ReviewPrior | None = None) -> dict[str, Any]:
        """The sums, plus the shrunk values when a prior is given (what OpenSearch stores)."""
        d: dict[str, Any] = asdict(self)
        if prior is not None:
            d["sentiment"] = round(self.sentiment(prior), 6)
            d["rating"] = round(self.rating(prior), 6)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReviewStats:
        return cls(
            int(d.get("count", 0)),
            float(d.get("sentiment_sum", 0.0)),
            int(d.get("rating_count", 0)),
            float(d.get("rating_sum", 0.0)),
        )


@dataclass(frozen=True)
class Review:
    product_id: str
    text: str
    rating: float | None = None
    date: str | None = None
    sentiment: float | None = None  # filled at ingest by the sentiment model

    @property
    def id(self) -> str:
        key = json.dumps([self.product_id, self.text, self.rating, self.date], ensure_ascii=False)
        return hashlib.sha256(key.encode()).hexdigest()[:24]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}


@dataclass
class ReviewRead:
    reviews: list[Review] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def parse_review(obj: Any) -> Review:
    """One review from a decoded JSON object; ``ValueError`` says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object with product_id, rating, text, date")
    pid = obj.get("product_id")
    if pid is None or not str(pid).strip():
        raise ValueError("product_id is missing")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text is missing or empty")
    rating = obj.get("rating")
    if rating is not None:
        if isinstance(rating, bool) or not isinstance(rating, int | float) or math.isnan(rating):
            raise ValueError(f"rating must be a number from 1 to 5, got {rating!r}")
        if not 1 <= rating <= 5:
            raise ValueError(f"rating must be from 1 to 5, got {rating!r}")
    date = obj.get("date")
    if date is not None and not isinstance(date, str):
        raise ValueError(f"date must be a string such as 2024-05-01, got {date!r}")
    return Review(
        str(pid).strip(),
        " ".join(text.split())[:MAX_TEXT_CHARS],
        None if rating is None else float(rating),
        date,
    )


def read_reviews(path: str | Path) -> ReviewRead:
    """Reviews from a JSONL file; bad lines are reported (file:line: reason) and skipped."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(
            f"no review file at {path}; give a JSONL file with product_id, rating, text, date per line"
        )
    out = ReviewRead()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                out.reviews.append(parse_review(json.loads(line)))
            except json.JSONDecodeError as exc:
                out.errors.append(RowError(str(path), n, f"not JSON ({exc.msg})"))
            except ValueError as exc:
                out.errors.append(RowError(str(path), n, str(exc)))
    return out


def aggregate(reviews: Iterable[Review]) -> dict[str, ReviewStats]:
    """Per product: the stats of the given (already scored) reviews."""
    out: dict[str, ReviewStats] = {}
    for r in reviews:
        if r.sentiment is None:
            raise BadInputError(f"review {r.id} has no sentiment score; score reviews before aggregating")
        out[r.product_id] = out.get(r.product_id, ReviewStats()).add(r.sentiment, r.rating)
    return out


@dataclass
class ReviewWriteReport:
    added: int = 0
    duplicates: int = 0
    products: list[str] = field(default_factory=list)  # products whose aggregate changed
    seconds: float = 0.0


class ReviewStore(Protocol):
    """Where scored reviews and their per-product aggregates live (one per backend)."""

    name: str

    def add(self, reviews: Sequence[Review]) -> ReviewWriteReport:
        """Store the reviews (duplicates skipped) and publish the aggregates of the products they
        were added to."""
        ...

    def stats(self, ids: Sequence[str] | None = None) -> dict[str, ReviewStats]: ...

    def publish(self, ids: Sequence[str] | None = None) -> list[DocError]: ...
