"""HTTP request and response shapes (separate from the domain types), with their limits.

Request bodies are strict: a JSON value is taken as the type it is (``true`` is no integer and
``"5"`` no number), numbers must be finite and objects have known, bounded keys. Query strings
are text on the wire, so ``GET /v1/search?k=5`` still parses. Every error answers in one shape,
:class:`ErrorOut`, declared for each status a route can return (:func:`error_responses`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from indexer.product import ID_PATTERN  # the one id rule, documented there
from plugin_api.http.records import (
    STRICT_BODY,
    USER_ID_PATTERN,
    CheckedAs,
    EventIn,
    ProductRecord,
    Text,
    Whole,
)
from plugin_api.http.records import ProductPutRecord as ProductPutRecord  # the routes' PUT body
from ranker.ranking.features import FEATURES

MAX_QUERY_CHARS = 512
MAX_PAGE_SIZE = 100
MAX_PAGES = 10
MAX_EVENTS = 1000
MAX_WRITE_BATCH = 500
MAX_WEIGHT = 1000.0  # |fusion weight override|


# -- errors ------------------------------------------------------------------------------------


class FieldProblem(BaseModel):
    field: str = Field(description="where: a query parameter, a dotted body path such as events.3, or body")
    message: str = Field(description="what is wrong with it")


class ErrorOut(BaseModel):
    """Every 4xx and 5xx answer: what went wrong and what to do about it."""

    error: str = Field(description="what went wrong and what to do about it")
    detail: list[FieldProblem] | None = Field(None, description="the problems one by one (422), else null")


ERROR_DESCRIPTIONS: Mapping[int, str] = MappingProxyType(
    {
        400: "the request is malformed",
        401: "a missing or invalid X-API-Key",
        404: "no such product or shopper",
        405: "the path does not take this method (see Allow)",
        408: "the request body did not arrive in time; send it without stalling",
        413: "the body is over SHOPRANK_MAX_BODY_BYTES; send smaller batches",
        422: "invalid input: not JSON, a wrong type, a value out of range; `detail` names each field",
        429: "too many requests in flight; retry after Retry-After seconds",
        503: "the backend or a model this request needs is unavailable; `error` says which",
    }
)


def error_responses(*codes: int, by_ref: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with the :class:`ErrorOut` JSON body.

    ``by_ref``: name the schema instead of the model, for responses shared with routes whose own
    media type is not JSON (FastAPI files a model under the route's media type, e.g. /metrics'
    text/plain); the routes' 422s register the model itself."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"description": ERROR_DESCRIPTIONS[code]}
        if by_ref:
            entry["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        else:
            entry["model"] = ErrorOut
        if code == 429:
            entry["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before retrying",
                    "required": True,
                    "schema": {"type": "string", "pattern": r"^[0-9]+$"},
                }
            }
        out[code] = entry
    return out


# -- search ------------------------------------------------------------------------------------


def _known_features(weights: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(FEATURES))
    if unknown:
        raise ValueError(f"unknown fusion feature(s) {unknown}; choose from {', '.join(FEATURES)}")
    return weights


Weights = Annotated[
    dict[str, Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)]],
    Field(max_length=len(FEATURES), json_schema_extra={"propertyNames": {"enum": list(FEATURES)}}),
    AfterValidator(_known_features),
]


# The registry's pipelines (ranker.ranking.pipelines) a storefront request may name.
SearchPipeline = Literal["full", "hybrid"]
API_PIPELINES: tuple[str, ...] = get_args(SearchPipeline)


class SearchParams(BaseModel):
    """``GET /v1/search`` query parameters (text on the wire: ``k=5`` parses)."""

    model_config = ConfigDict(extra="forbid")

    q: Text = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, description="what the shopper typed")
    k: Whole = Field(10, ge=1, le=MAX_PAGE_SIZE, description="results per page")
    page: Whole = Field(1, ge=1, le=MAX_PAGES)
    brand: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=50, description="keep these brands only"
    )
    price_min: float | None = Field(None, ge=0, allow_inf_nan=False)
    price_max: float | None = Field(None, ge=0, allow_inf_nan=False)
    user_id: str | None = Field(None, pattern=USER_ID_PATTERN, description="pseudonymous shopper id")
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="MMR: 0 = relevance only, 1 = most varied")
    explain: bool = False
    pipeline: SearchPipeline = Field("full", description="a named pipeline: full (ranked) or hybrid (fast)")
    exact: bool = Field(
        False,
        description="search the text exactly as typed: no typo correction, no completion of the last word",
    )


class SearchBody(SearchParams):
    """``POST /v1/search``: the same fields as JSON, strictly typed, plus fusion ``weights``."""

    model_config = STRICT_BODY

    weights: Weights | None = Field(
        None,
        description=f"per-request fusion weight overrides, feature → weight in ±{MAX_WEIGHT:g}",
    )


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


class CorrectionOut(BaseModel):
    from_: str = Field(..., alias="from", description="the term as typed")
    to: str = Field(..., description="the catalog term searched instead")
    edits: int

    model_config = ConfigDict(populate_by_name=True)


class CompletionOut(BaseModel):
    prefix: str = Field(..., description="the last word as typed")
    completed: str = Field(..., description="the catalog term it was completed to")


class ExpansionOut(BaseModel):
    term: str
    weight: float


class ConstraintOut(BaseModel):
    kind: str = Field(
        ..., description="price, diagonal, capacity, resolution, power, battery, refresh or sensor"
    )
    low: float | None = Field(None, description="lower bound in the unit (None: open)")
    high: float | None = Field(None, description="upper bound in the unit (None: open)")
    unit: str = Field(..., description="canonical unit (in, GB, p, W, mAh, Hz, MP; empty for prices)")
    text: str = Field(..., description="the words it was read from (remove them to drop it)")


class InterpretationOut(BaseModel):
    """What query understanding made of the text before searching."""

    original_query: str
    searched_query: str
    corrections: list[CorrectionOut]
    completion: CompletionOut | None = None
    expansions: list[ExpansionOut] = Field(
        default_factory=list, description="other completions of the last word, matched at a lower weight"
    )
    exact: bool = Field(False, description="searched as typed (exact=true)")
    constraints: list[ConstraintOut] = Field(
        default_factory=list,
        description="the query's numbers, applied as soft preferences (ranking feature constraint_match)",
    )
    brands: list[str] = Field(default_factory=list, description="catalog brands the query names")
    models: list[str] = Field(default_factory=list, description="model numbers the query names")
    product_type: str | None = Field(
        None, description="the product type the query's last word names (ranking feature type_match)"
    )
    types: list[str] = Field(
        default_factory=list, description="the catalog's product types that fit it best, commonest first"
    )


class SearchResponse(BaseModel):
    query_id: str
    query: str
    page: int
    k: int
    total_candidates: int
    results: list[ResultOut]
    facets: Facets
    timings_ms: dict[str, float]
    corrected_query: str | None = Field(
        None,
        description="the query searched when a typo was corrected (offer the original with exact=true)",
    )
    interpretation: InterpretationOut | None = None


class SuggestionOut(BaseModel):
    text: str = Field(..., description="the completed query, as the catalog spells its words")
    products: int = Field(..., description="products naming every word of it")
    source: Literal["catalog", "queries"] = Field(
        ..., description="catalog phrases (brands, categories, title words) or the shop's engaged queries"
    )


class SuggestResponse(BaseModel):
    query: str
    suggestions: list[SuggestionOut]


class RecommendResponse(BaseModel):
    strategy: str
    results: list[ResultOut]


# -- events ------------------------------------------------------------------------------------


class EventsIn(BaseModel):
    """UBI ``ubi_events`` documents as the storefront sends them (validated one by one)."""

    model_config = STRICT_BODY

    events: list[Annotated[dict[str, Any], CheckedAs(EventIn)]] = Field(
        ..., min_length=1, max_length=MAX_EVENTS
    )


class EventsOut(BaseModel):
    accepted: int
    duplicates: int
    resolved: int


# -- reviews -----------------------------------------------------------------------------------


class ReviewIn(BaseModel):
    model_config = STRICT_BODY

    product_id: str = Field(..., pattern=ID_PATTERN)
    text: Text = Field(..., min_length=1, max_length=20_000)
    rating: float | None = Field(None, ge=1, le=5, allow_inf_nan=False)
    date: str | None = Field(None, max_length=40)


class ReviewsIn(BaseModel):
    model_config = STRICT_BODY

    reviews: list[ReviewIn] = Field(..., min_length=1, max_length=MAX_WRITE_BATCH)


class ReviewsOut(BaseModel):
    added: int
    duplicates: int
    products: int
    errors: list[str]


# -- products ----------------------------------------------------------------------------------


class ProductsIn(BaseModel):
    """Catalog records (the same fields ``shoprank index`` reads), each with an ``id``."""

    model_config = STRICT_BODY

    products: list[ProductRecord] = Field(..., min_length=1, max_length=MAX_WRITE_BATCH)


class WriteOut(BaseModel):
    written: int
    deleted: int
    errors: list[str]


class ErasedOut(BaseModel):
    user_id: str
    erased_records: int


# -- operations --------------------------------------------------------------------------------


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["ready"]
    products: int = Field(description="products in the live index")
    events: int = Field(description="shopper events the ranking has folded in")
