"""The JSON records the write endpoints take (events, products), typed strictly for HTTP.

A record is validated (and documented in the OpenAPI document) as a model here, then handed on
as the JSON object that was sent, so the domain readers (``indexer.events.parse_event``,
``indexer.catalog.product_from_record``, which also read files and so are lax about types) see
it as it came. The rules a JSON Schema cannot state (timestamps near the service's clock, ids
unique in a batch, the id pattern's own message) stay with those readers.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainValidator,
    WithJsonSchema,
)
from pydantic_core import core_schema

from indexer.product import ID_PATTERN, check_id  # the one id rule, documented there

MAX_TEXT_CHARS = 256  # ids, names and other short text fields of events

# Shoppers' ids (events' client_id) are addressed in paths too, under the same rule.
USER_ID_PATTERN = ID_PATTERN
# Some character that is not white space as Python's str.strip() sees it (JSON Schema patterns
# search; ``\S`` differs between regex dialects, e.g. on U+001C..U+001F).
NOT_BLANK = r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

STRICT_BODY = ConfigDict(extra="forbid", strict=True)


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("is empty or only white space; send some text")
    return v


Text = Annotated[str, Field(json_schema_extra={"pattern": NOT_BLANK}), AfterValidator(_not_blank)]


class CheckedAs:
    """``Annotated[dict[str, Any], CheckedAs(Model)]``: validated and documented as ``Model``,
    handed on as the JSON object that was sent (whole numbers sent as ``5.0`` made ``5``), so the
    domain reader sees the record as it came, fields sent as null included."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_wrap_validator_function(_keep_input, handler.generate_schema(self.model))


def _keep_input(value: Any, handler: core_schema.ValidatorFunctionWrapHandler) -> Any:
    return handler(value).model_dump(exclude_unset=True)


MAX_INT = 2**53 - 1  # whole numbers (ids, timestamps) a JSON double holds exactly


def _whole(v: Any) -> Any:
    """JSON Schema's integer includes ``5.0``; JSON's number that is a whole one becomes an int."""
    if isinstance(v, float) and v.is_integer() and abs(v) <= MAX_INT:
        return int(v)
    return v


Whole = Annotated[int, BeforeValidator(_whole)]


# -- events ------------------------------------------------------------------------------------


def _text_or_int(v: Any) -> Any:
    v = _whole(v)
    if isinstance(v, str) and len(v) <= MAX_TEXT_CHARS:
        return v
    if isinstance(v, int) and not isinstance(v, bool) and -MAX_INT <= v <= MAX_INT:
        return v
    raise ValueError(f"must be text of at most {MAX_TEXT_CHARS} characters or a whole number")


def _timestamp(v: Any) -> Any:
    if isinstance(v, str) and len(v) <= 64:
        return v
    if isinstance(v, int) and not isinstance(v, bool) and -MAX_INT <= v <= MAX_INT:
        return v
    if isinstance(v, float) and math.isfinite(v) and abs(v) <= MAX_INT:
        return v
    raise ValueError(
        "timestamp must be a finite number (epoch milliseconds or seconds) or an ISO 8601 string"
    )


TextOrInt = Annotated[
    Any,
    PlainValidator(_text_or_int),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_TEXT_CHARS},
                {"type": "integer", "minimum": -MAX_INT, "maximum": MAX_INT},
            ]
        }
    ),
]
Timestamp = Annotated[
    Any,
    PlainValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": -MAX_INT, "maximum": MAX_INT},
                {"type": "string", "maxLength": 64},
            ],
            "description": "epoch milliseconds or seconds, or ISO 8601; from 2000-01-01 to at most "
            "10 minutes ahead of the service's clock",
        }
    ),
]


def _shopper_id(v: str) -> str:
    return check_id(v, what="client_id")


ShopperId = Annotated[str, Field(json_schema_extra={"pattern": USER_ID_PATTERN}), AfterValidator(_shopper_id)]


class EventObjectIn(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    object_id: TextOrInt | None = Field(None, description="the product: its id, or an EAN")
    object_id_field: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = Field(
        None, description="`id`, or the EAN field such as `primary_ean`"
    )


class EventPositionIn(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    ordinal: Annotated[int, Field(ge=0, le=100_000), BeforeValidator(_whole)] | None = Field(
        None, description="the result's place on the page"
    )


class EventAttributesIn(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    object: EventObjectIn | None = None
    position: EventPositionIn | None = None
    session_id: TextOrInt | None = None


class EventIn(BaseModel):
    """One UBI ``ubi_events`` document. Other fields are kept (IP addresses and browser strings
    are dropped); a document nests at most 8 levels and is at most 16 kB as JSON."""

    model_config = ConfigDict(extra="allow", strict=True)

    action_name: Annotated[Text, Field(max_length=MAX_TEXT_CHARS)] = Field(
        ..., description="impression, click, add_to_cart, purchase, …"
    )
    client_id: ShopperId = Field(..., description="the pseudonymous shopper")
    timestamp: Timestamp
    query_id: TextOrInt | None = Field(None, description="the `query_id` of the search it follows")
    session_id: TextOrInt | None = None
    user_query: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = None
    event_attributes: EventAttributesIn | None = None


# -- products ----------------------------------------------------------------------------------


def _product_id(v: Any) -> Any:
    # the id's pattern is the catalog reader's check (indexer.product), named in its own error
    v = _whole(v)
    if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT):
        return v
    raise ValueError("product id must be text or a whole number")


ProductIdIn = Annotated[
    Any,
    PlainValidator(_product_id),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": ID_PATTERN},
                {"type": "integer", "minimum": 0, "maximum": MAX_INT},
            ],
            "description": "the product id",
        }
    ),
]


def _attribute(v: Any) -> Any:
    if v is None or isinstance(v, str | bool):
        return v
    if isinstance(v, int) and abs(v) <= MAX_INT:
        return v
    if isinstance(v, float) and math.isfinite(v) and abs(v) <= MAX_INT:
        return v
    raise ValueError(f"an attribute is text, a number within ±{MAX_INT}, true/false or null")


def _eans(v: Any) -> Any:
    if isinstance(v, str) or (isinstance(v, list) and all(isinstance(e, str) for e in v)):
        return v
    raise ValueError("ean is a string or a list of strings")


AttributeIn = Annotated[
    Any,
    PlainValidator(_attribute),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "number", "minimum": -MAX_INT, "maximum": MAX_INT},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]
EanIn = Annotated[
    Any,
    PlainValidator(_eans),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


class ProductFields(BaseModel):
    """A catalog record's fields (the generic shape ``shoprank index`` reads), strictly typed."""

    model_config = STRICT_BODY

    title: Text = Field(..., description="what the shopper sees")
    description: str | None = None
    brand: str | None = None
    category: str | None = None
    name: str | None = Field(None, description="the model name (finds duplicates)")
    price: float | None = Field(None, ge=0, allow_inf_nan=False, description="in currency units")
    attributes: dict[str, AttributeIn] | None = Field(
        None, max_length=500, description="per-category attributes: text, numbers, booleans"
    )
    ean: EanIn | None = Field(None, description="EAN codes")
    image_url: str | None = None
    in_stock: bool | None = None
    date_released: str | None = None


class ProductIn(ProductFields):
    """A product for ``POST /v1/products``; ids are unique within a batch."""

    id: ProductIdIn


class ProductPutIn(ProductFields):
    """A product for ``PUT /v1/products/{id}``: the path names it, the body has no ``id``."""


ProductRecord = Annotated[dict[str, Any], CheckedAs(ProductIn)]
ProductPutRecord = Annotated[dict[str, Any], CheckedAs(ProductPutIn)]
