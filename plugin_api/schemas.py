"""HTTP request and response shapes (separate from the domain types), with their limits."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_QUERY_CHARS = 512
MAX_PAGE_SIZE = 100
MAX_PAGES = 10
MAX_EVENTS = 1000
MAX_WRITE_BATCH = 500
ID_PATTERN = r"^[^\s/]{1,256}$"


class SearchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, description="what the shopper typed")
    k: int = Field(10, ge=1, le=MAX_PAGE_SIZE, description="results per page")
    page: int = Field(1, ge=1, le=MAX_PAGES)
    brand: list[str] = Field(default_factory=list, max_length=50, description="keep these brands only")
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)
    user_id: str | None = Field(None, pattern=ID_PATTERN, description="pseudonymous shopper id")
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="MMR: 0 = relevance only, 1 = most varied")
    explain: bool = False
    pipeline: Literal["full", "hybrid"] = "full"


class SearchBody(SearchParams):
    weights: dict[str, float] | None = Field(None, description="per-request fusion weight overrides")


class ProductOut(BaseModel):
    id: str
    title: str
    brand: str = ""
    category: str = ""
    price: float | None = None
    image_url: str = ""
    rating: float | None = None
    sentiment: float | None = None
    review_count: int = 0


class ResultOut(BaseModel):
    id: str
    rank: int
    score: float
    product: ProductOut | None = None
    explanation: dict[str, Any] | None = None


class Facets(BaseModel):
    brand: dict[str, int]
    price: dict[str, int]


class SearchResponse(BaseModel):
    query_id: str
    query: str
    page: int
    k: int
    total_candidates: int
    results: list[ResultOut]
    facets: Facets
    timings_ms: dict[str, float]


class RecommendResponse(BaseModel):
    strategy: str
    results: list[ResultOut]


class EventsIn(BaseModel):
    """UBI ``ubi_events`` documents as the storefront sends them (validated one by one)."""

    events: list[dict[str, Any]] = Field(..., min_length=1, max_length=MAX_EVENTS)


class EventsOut(BaseModel):
    accepted: int
    duplicates: int
    resolved: int


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(..., pattern=ID_PATTERN)
    text: str = Field(..., min_length=1, max_length=20_000)
    rating: float | None = Field(None, ge=1, le=5)
    date: str | None = Field(None, max_length=40)


class ReviewsIn(BaseModel):
    reviews: list[ReviewIn] = Field(..., min_length=1, max_length=MAX_WRITE_BATCH)


class ReviewsOut(BaseModel):
    added: int
    duplicates: int
    products: int
    errors: list[str]


class ProductsIn(BaseModel):
    """Catalog records (the same fields ``shoprank index`` reads), each with an ``id``."""

    products: list[dict[str, Any]] = Field(..., min_length=1, max_length=MAX_WRITE_BATCH)


class WriteOut(BaseModel):
    written: int
    deleted: int
    errors: list[str]


class ErasedOut(BaseModel):
    user_id: str
    erased_records: int


class ErrorOut(BaseModel):
    error: str
    detail: Any = None
