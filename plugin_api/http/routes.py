"""The ``/v1`` endpoints and the health/metrics probes. Thin: validate, call the services, shape."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, Security
from fastapi.responses import PlainTextResponse
from fastapi.security import APIKeyHeader

from indexer.catalog import product_from_record
from indexer.errors import BadInputError, ShoprankError
from indexer.events import parse_event
from indexer.product import Product
from indexer.reviews import Review
from plugin_api.backends import review_prior
from plugin_api.http.auth import check_api_key, event_trust
from plugin_api.http.schemas import (
    ID_PATTERN,
    USER_ID_PATTERN,
    CompletionOut,
    ConstraintOut,
    CorrectionOut,
    ErasedOut,
    EventsIn,
    EventsOut,
    ExpansionOut,
    Facets,
    HealthOut,
    InterpretationOut,
    ProductOut,
    ProductPutRecord,
    ProductsIn,
    ReadyOut,
    RecommendResponse,
    ResultOut,
    ReviewsIn,
    ReviewsOut,
    SearchBody,
    SearchParams,
    SearchResponse,
    SuggestionOut,
    SuggestResponse,
    WriteOut,
    error_responses,
)
from plugin_api.http.services import Services
from ranker.base import Filters, Hit, SearchOptions, SearchRequest
from ranker.query.rewrite import Interpretation
from ranker.ranking.features import signals_from_reviews
from ranker.recommend.recommender import Recommendations

# Any request may meet the transport limits (plugin_api.http.limits): a malformed framing (400), a
# stalled body (408), a body too large (413); every route but the probes also admission (429).
router = APIRouter(responses=error_responses(400, 408, 413, by_ref=True))
PRICE_BUCKETS = ((0, 50), (50, 100), (100, 250), (250, 500), (500, 1000), (1000, None))
ProductId = Annotated[str, Path(pattern=ID_PATTERN)]
UserId = Annotated[str, Path(pattern=USER_ID_PATTERN)]
# Declared as an OpenAPI security scheme, so clients (and schemathesis) know which calls need it.
API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    auto_error=False,
    description="one of SHOPRANK_API_KEYS (admin), or for events one of SHOPRANK_PUBLIC_KEYS",
)
ApiKey = Annotated[str | None, Security(API_KEY)]


class _FieldErrors(BadInputError):
    def __init__(self, problems: list[dict[str, str]]):
        first = problems[0]
        super().__init__(
            f"{first['field']}: {first['message']} ({len(problems)} problem(s); nothing was stored)"
        )
        self.problems = problems


def _field_errors(problems: list[dict[str, str]]) -> ShoprankError:
    return _FieldErrors(problems)


def _services(request: Request) -> Services:
    services: Services = request.app.state.holder.get()
    return services


def _require_key(request: Request, key: str | None) -> None:
    check_api_key(key, request.app.state.settings.api_keys)


def product_out(p: Product, services: Services) -> ProductOut:
    sentiment = rating = None
    count = 0
    if p.reviews is not None and p.reviews.count:
        sig = signals_from_reviews(p.reviews, review_prior(services.settings))
        sentiment, rating, count = sig.sentiment, sig.rating, sig.review_count
    return ProductOut(
        id=p.id,
        title=p.title,
        brand=p.brand,
        category=p.category,
        price=p.price,
        image_url=p.image_url,
        rating=None if rating is None else round(rating, 3),
        sentiment=None if sentiment is None else round(sentiment, 3),
        review_count=count,
    )


def _facets(hits: list[Hit]) -> Facets:
    brands: dict[str, int] = {}
    prices = {(f"{lo}-{hi}" if hi is not None else f"{lo}+"): 0 for lo, hi in PRICE_BUCKETS}
    for h in hits:
        p = h.product
        if p is None:
            continue
        if p.brand:
            brands[p.brand] = brands.get(p.brand, 0) + 1
        if p.price is not None:
            for lo, hi in PRICE_BUCKETS:
                if p.price >= lo and (hi is None or p.price < hi):
                    prices[f"{lo}-{hi}" if hi is not None else f"{lo}+"] += 1
                    break
    top = dict(sorted(brands.items(), key=lambda kv: (-kv[1], kv[0].casefold()))[:30])
    return Facets(brand=top, price=prices)


def _explanation(h: Hit, explain: bool) -> dict[str, Any] | None:
    if not explain:
        return None
    given = getattr(h, "explanation", None)
    if given is not None:
        return dict(given)
    return {"sources": {k: {"score": v.score, "rank": v.rank} for k, v in h.sources.items()}}


def _search(request: Request, params: SearchParams, weights: dict[str, float] | None) -> SearchResponse:
    services = _services(request)
    pool = max(services.settings.rerank_candidates, params.k * params.page)
    req = SearchRequest(
        params.q,
        k=pool,
        filters=Filters(tuple(params.brand), params.price_min, params.price_max),
        exact=params.exact,
    )
    opts = SearchOptions(
        diversity=params.diversity, weights=weights, explain=params.explain, user_id=params.user_id
    )
    start = (params.page - 1) * params.k
    result, query_id = services.search(
        req, opts, client_id=params.user_id, pipeline=params.pipeline, shown=(start, params.k)
    )
    request.app.state.metrics.observe_stages(dict(result.timings_ms))
    page = result.hits[start : start + params.k]
    return SearchResponse(
        query_id=query_id,
        query=params.q,
        page=params.page,
        k=params.k,
        total_candidates=len(result.hits),
        results=[
            ResultOut(
                id=h.id,
                rank=start + n,
                score=round(float(h.score), 6),
                product=product_out(h.product, services) if h.product is not None else None,
                explanation=_explanation(h, params.explain),
            )
            for n, h in enumerate(page, start=1)
        ],
        facets=_facets(result.hits),
        timings_ms=dict(result.timings_ms),
        **_interpretation(result.interpretation),
    )


def _interpretation(interp: Interpretation | None) -> dict[str, Any]:
    if interp is None:
        return {}
    return {
        "corrected_query": interp.query if interp.corrections else None,
        "interpretation": InterpretationOut(
            original_query=interp.original,
            searched_query=interp.query,
            corrections=[
                CorrectionOut.model_validate({"from": c.original, "to": c.corrected, "edits": c.edits})
                for c in interp.corrections
            ],
            completion=(
                None
                if interp.completion is None
                else CompletionOut(prefix=interp.completion.prefix, completed=interp.completion.completed)
            ),
            expansions=[ExpansionOut(term=t, weight=w) for t, w in interp.expansions],
            exact=interp.exact,
            constraints=[
                ConstraintOut(kind=c.kind, low=c.low, high=c.high, unit=c.unit, text=c.text)
                for c in interp.constraints
            ],
            brands=list(interp.brands),
            models=list(interp.models),
            product_type=None if interp.intent is None else interp.intent.head,
            types=[] if interp.intent is None else list(interp.intent.phrases),
        ),
    }


@router.get(
    "/v1/search",
    response_model=SearchResponse,
    tags=["search"],
    responses=error_responses(422, 503, 429),
)
def search_get(request: Request, params: Annotated[SearchParams, Query()]) -> SearchResponse:
    """Storefront search: hybrid retrieval, cross-encoder, fusion with shop signals, MMR."""
    return _search(request, params, None)


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    tags=["search"],
    responses=error_responses(422, 503, 429),
)
def search_post(request: Request, body: SearchBody) -> SearchResponse:
    """The same search with a JSON body (and per-request fusion ``weights``)."""
    return _search(request, body, body.weights)


@router.get(
    "/v1/suggest",
    response_model=SuggestResponse,
    tags=["search"],
    responses=error_responses(422, 503, 429),
)
# async: a keystroke's suggestions are a fraction of a millisecond of CPU (q ≤ 200 characters),
# less than the hop to a worker thread and back that a plain ``def`` route pays
async def suggest(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=200, description="what the shopper has typed so far")],
    k: Annotated[int, Query(ge=1, le=10, description="suggestions to return")] = 10,
) -> SuggestResponse:
    """Search-as-you-type: completions from the catalog and the shop's engaged queries, typos forgiven."""
    services = _services(request)
    found = services.suggest(q, k)
    return SuggestResponse(
        query=q,
        suggestions=[SuggestionOut(text=x.text, products=x.products, source=x.source) for x in found],  # type: ignore[arg-type]
    )


def _recs(recs: Recommendations, services: Services) -> RecommendResponse:
    return RecommendResponse(
        strategy=recs.strategy,
        results=[
            ResultOut(
                id=r.id,
                rank=n,
                score=round(r.score, 6),
                product=product_out(r.product, services) if r.product is not None else None,
                explanation=dict(r.explanation),
            )
            for n, r in enumerate(recs.items, start=1)
        ],
    )


@router.get(
    "/v1/recommend/similar/{product_id}",
    response_model=RecommendResponse,
    tags=["recommend"],
    responses=error_responses(404, 422, 503, 429),
)
def similar(
    request: Request,
    product_id: ProductId,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    diversity: Annotated[float, Query(ge=0, le=1)] = 0.3,
) -> RecommendResponse:
    """ "Similar items": vector neighbours + co-interaction + sentiment, duplicates left out."""
    services = _services(request)
    services.sync_events()
    services.check_index()  # product vectors of another model's index would recommend at random
    return _recs(services.recommender.similar(product_id, k, diversity), services)


@router.get(
    "/v1/recommend/user/{user_id}",
    response_model=RecommendResponse,
    tags=["recommend"],
    responses=error_responses(422, 503, 429),
)
def for_user(
    request: Request,
    user_id: UserId,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    diversity: Annotated[float, Query(ge=0, le=1)] = 0.3,
) -> RecommendResponse:
    """Personal picks from the shopper's history; trending products for a new shopper."""
    services = _services(request)
    services.sync_events()
    services.check_index()  # product vectors of another model's index would recommend at random
    return _recs(services.recommender.for_user(user_id, k, diversity), services)


@router.post(
    "/v1/events",
    response_model=EventsOut,
    tags=["events"],
    responses=error_responses(401, 422, 503, 429),
    openapi_extra={"security": [{}]},  # with the scheme FastAPI adds: a key, or none
)
def post_events(request: Request, body: EventsIn, x_api_key: ApiKey = None) -> EventsOut:
    """A batch of UBI events (impression, click, add_to_cart, purchase, …). With an admin key
    (the shop's backend) events are trusted; with a public key, or none when the service has no
    public keys, they come from a browser: they shape that shopper's own profile, and move shared
    signals only within the README's threat-model bounds."""
    trusted = event_trust(x_api_key, request.app.state.settings)
    events, problems = [], []
    now = time.time()
    for i, d in enumerate(body.events):
        try:
            events.append(parse_event(d, now=now))
        except (ValueError, TypeError) as e:
            problems.append({"field": f"events.{i}", "message": str(e)})
    if problems:
        raise _field_errors(problems)
    rep = _services(request).add_events(events, trusted=trusted)
    return EventsOut(accepted=rep.accepted, duplicates=rep.duplicates, resolved=rep.resolved)


@router.post(
    "/v1/reviews",
    response_model=ReviewsOut,
    tags=["write"],
    responses=error_responses(401, 422, 503, 429),
)
def post_reviews(request: Request, body: ReviewsIn, x_api_key: ApiKey = None) -> ReviewsOut:
    """Reviews scored by the sentiment model; products' aggregates update at once."""
    _require_key(request, x_api_key)
    reviews = [Review(r.product_id, r.text.strip(), r.rating, r.date) for r in body.reviews]
    rep = _services(request).add_reviews(reviews)
    return ReviewsOut(
        added=rep.added, duplicates=rep.duplicates, products=rep.products, errors=[str(e) for e in rep.errors]
    )


def _products(records: list[dict[str, Any]]) -> list[Product]:
    """The batch as products, or a 422 naming every bad record and every repeated id (a batch is
    applied whole, so nothing is stored)."""
    out, problems = [], []
    first: dict[str, int] = {}
    for i, rec in enumerate(records):
        try:
            p = product_from_record(rec)
        except (ValueError, TypeError, KeyError) as e:
            problems.append({"field": f"products.{i}", "message": str(e)})
            continue
        if p.id in first:
            problems.append(
                {
                    "field": f"products.{i}",
                    "message": f"product id {p.id!r} is already at products.{first[p.id]}; "
                    "send each product once per batch",
                }
            )
            continue
        first[p.id] = i
        out.append(p)
    if problems:
        raise _field_errors(problems)
    return out


@router.post(
    "/v1/products",
    response_model=WriteOut,
    tags=["write"],
    responses=error_responses(401, 422, 503, 429),
)
def upsert_products(request: Request, body: ProductsIn, x_api_key: ApiKey = None) -> WriteOut:
    """Add or replace products in the live index (no rebuild)."""
    _require_key(request, x_api_key)
    rep = _services(request).upsert_products(_products(body.products))
    return WriteOut(written=rep.indexed, deleted=0, errors=[str(e) for e in rep.errors])


@router.put(
    "/v1/products/{product_id}",
    response_model=WriteOut,
    tags=["write"],
    responses=error_responses(401, 422, 503, 429),
)
def put_product(
    request: Request,
    product_id: ProductId,
    body: ProductPutRecord,
    x_api_key: ApiKey = None,
) -> WriteOut:
    """Add or replace one product; the path names it (the body carries no ``id``)."""
    _require_key(request, x_api_key)
    rep = _services(request).upsert_products(_products([{**body, "id": product_id}]))
    return WriteOut(written=rep.indexed, deleted=0, errors=[str(e) for e in rep.errors])


@router.delete(
    "/v1/products/{product_id}",
    response_model=WriteOut,
    tags=["write"],
    responses=error_responses(401, 404, 422, 503, 429),
)
def delete_product(request: Request, product_id: ProductId, x_api_key: ApiKey = None) -> WriteOut:
    _require_key(request, x_api_key)
    rep = _services(request).delete_product(product_id)
    return WriteOut(written=0, deleted=rep.deleted, errors=[str(e) for e in rep.errors])


@router.delete(
    "/v1/users/{user_id}",
    response_model=ErasedOut,
    tags=["privacy"],
    responses=error_responses(401, 404, 422, 503, 429),
)
def erase_user(request: Request, user_id: UserId, x_api_key: ApiKey = None) -> ErasedOut:
    """Erase a shopper: their events, queries and profile."""
    _require_key(request, x_api_key)
    return ErasedOut(user_id=user_id, erased_records=_services(request).erase_user(user_id))


@router.get("/healthz", response_model=HealthOut, tags=["ops"])
def healthz() -> HealthOut:
    """The process is up (it may still be waiting for its backend)."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, tags=["ops"], responses=error_responses(503, 429))
def readyz(request: Request) -> ReadyOut:
    """The backend answers and the models are loaded."""
    return ReadyOut(status="ready", **_services(request).ready())


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    tags=["ops"],
    responses={200: {"description": "Prometheus text exposition format", "content": {"text/plain": {}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and latency per endpoint, time per ranking stage."""
    return request.app.state.metrics.render()  # type: ignore[no-any-return]
