"""Shopper events in the OpenSearch UBI shape: parsing, validation, log files, the store role.

An event is what a storefront reports about a shopper (``client_id``, pseudonymous) acting on a
product (``object_id``) after a search (``query_id``): ``impression``, ``click``, ``add_to_cart``,
``purchase`` and the other UBI action names. Events are kept as they arrived (the original UBI
record travels along, less identifying details ranking never needs: IP addresses, browser strings,
see ``PRIVATE_KEYS``) plus the few fields ranking needs.

Log files load as they are: OpenSearch bulk NDJSON (``{"index": …}`` action lines followed by
``ubi_queries`` / ``ubi_events`` documents), ``<index>\\t<json>`` lines (the Chorus UBI export),
plain JSONL, or a JSON array; a ``.zip`` holding one of those works too. Bad lines are reported
with their place, never silently dropped and never fatal.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from indexer.errors import BadInputError, RowError
from indexer.product import check_id

MAX_ID_CHARS = 256
# What an event may claim (every event is untrusted input; see README "Threat model").
TIMESTAMP_FLOOR = 946_684_800.0  # 2000-01-01T00:00:00Z: nothing earlier is a shop's event
MAX_CLOCK_SKEW_S = 600.0  # a browser clock may run this far ahead of ours
MAX_EVENT_DEPTH = 8  # nesting of objects and lists in one event
MAX_EVENT_BYTES = 16_384  # one event as JSON
MAX_POSITION = 100_000  # event_attributes.position.ordinal
# Fields that name the product in ``object_id``; other fields (an ASIN, a filter value) stay
# unresolved: the event is stored, it just names nothing in this catalog.
ID_FIELDS = frozenset({"", "id", "product_id", "doc_id", "_id", "internal_id"})
EAN_FIELDS = frozenset({"ean", "primary_ean", "gtin", "ean13"})


def client_hash(client_id: str) -> str:
    """What an erasure record keeps of the shopper id (SHA-256, hex): enough for another process to
    find the profile to forget, not the id itself."""
    return hashlib.sha256(client_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Event:
    action_name: str
    client_id: str
    timestamp: float  # seconds since the epoch, UTC
    query_id: str | None = None
    object_id: str | None = None
    object_id_field: str | None = None
    session_id: str | None = None
    position: int | None = None
    user_query: str | None = None
    product_id: str | None = None  # object_id resolved to this catalog's id (None: not a product)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    # Who vouches for it: True for the shop's own backend (admin key, `shoprank events ingest`),
    # False for a browser (public key or none). Only trusted events count as purchases.
    trusted: bool = field(default=True, compare=False)
    # An untrusted event names a product the service showed this shopper for its query_id.
    verified: bool = field(default=False, compare=False)
    received: float | None = field(default=None, compare=False)  # when the service got it

    @property
    def effective_time(self) -> float:
        """The time ranking uses: a browser cannot date its event later than its arrival."""
        if self.trusted or self.received is None:
            return self.timestamp
        return min(self.timestamp, self.received)

    @property
    def id(self) -> str:
        """Content hash of the whole record as sent: the same event sent twice is stored once,
        two different events in the same millisecond are both kept."""
        if self.raw:
            canon = json.dumps(self.raw, sort_keys=True, ensure_ascii=False, default=str)
            return hashlib.sha256(canon.encode()).hexdigest()[:32]
        key = [
            self.action_name,
            self.client_id,
            round(self.timestamp, 3),
            self.query_id,
            self.object_id,
            self.object_id_field,
            self.session_id,
            self.position,
        ]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.id,
            "action_name": self.action_name,
            "client_id": self.client_id,
            "timestamp": self.timestamp,
            "query_id": self.query_id,
            "object_id": self.object_id,
            "object_id_field": self.object_id_field,
            "session_id": self.session_id,
            "position": self.position,
            "user_query": self.user_query,
            "product_id": self.product_id,
            "raw": dict(self.raw),
            "trusted": self.trusted,
            "verified": self.verified,
            "received": self.received,
        }

    @classmethod
    def from_stored(cls, d: Mapping[str, Any]) -> Event:
        """An event as stored; ValueError/KeyError/TypeError for a record that cannot be one."""
        if not isinstance(d.get("action_name"), str) or not isinstance(d.get("client_id"), str):
            raise ValueError("a stored event needs string action_name and client_id")
        ts = float(d["timestamp"])
        if not math.isfinite(ts):
            raise ValueError(f"stored timestamp {ts} is not a finite number")
        received = d.get("received")
        return cls(
            action_name=d["action_name"],
            client_id=d["client_id"],
            timestamp=ts,
            query_id=d.get("query_id"),
            object_id=d.get("object_id"),
            object_id_field=d.get("object_id_field"),
            session_id=d.get("session_id"),
            position=d.get("position"),
            user_query=d.get("user_query"),
            product_id=d.get("product_id"),
            raw=d.get("raw") or {},
            trusted=bool(d.get("trusted", True)),  # records stored before trust was kept: as before
            verified=bool(d.get("verified", False)),
            received=float(received)
            if isinstance(received, int | float) and math.isfinite(received)
            else None,
        )


@dataclass(frozen=True)
class QueryRecord:
    """A ``ubi_queries`` record: one search, the shopper who ran it, and what it showed."""

    query_id: str
    client_id: str
    user_query: str
    timestamp: float
    object_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "client_id": self.client_id,
            "user_query": self.user_query,
            "timestamp": self.timestamp,
            "query_response_object_ids": list(self.object_ids),
        }


def parse_timestamp(v: Any, *, now: float | None = None) -> float:
    """Epoch seconds from epoch milliseconds / seconds (numbers) or an ISO 8601 string, between
    :data:`TIMESTAMP_FLOOR` and ``now`` + :data:`MAX_CLOCK_SKEW_S` (default: the current time)."""
    t = _timestamp(v)
    if not math.isfinite(t):
        raise ValueError(f"timestamp {v!r} is not a finite number; send epoch milliseconds or ISO 8601")
    ceiling = (time.time() if now is None else now) + MAX_CLOCK_SKEW_S
    if t < TIMESTAMP_FLOOR:
        raise ValueError(f"timestamp {v!r} is before 2000-01-01; send epoch milliseconds or ISO 8601")
    if t > ceiling:
        raise ValueError(
            f"timestamp {v!r} is more than {MAX_CLOCK_SKEW_S:.0f} s in the future; check the sender's clock"
        )
    return t


def _timestamp(v: Any) -> float:
    if isinstance(v, bool) or v is None:
        raise ValueError("timestamp is missing; send epoch milliseconds or an ISO 8601 time")
    if isinstance(v, int | float):
        t = float(v)
        return t / 1000.0 if t > 1e11 else t  # 1e11 s is the year 5138: larger means milliseconds
    if isinstance(v, str):
        s = v.strip()
        if len(s) > 64:
            raise ValueError("timestamp is longer than 64 characters; send epoch milliseconds or ISO 8601")
        try:
            return _timestamp(float(s))
        except (ValueError, OverflowError):
            pass
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp {v!r} is neither epoch milliseconds nor ISO 8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise ValueError(f"timestamp must be a number or a string, got {type(v).__name__}")


def check_document(value: Any, *, what: str = "an event") -> None:
    """ValueError unless ``value`` is plain JSON of bounded depth and size with finite numbers
    only (checked iteratively: a deeply nested document cannot exhaust the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, Mapping | list):
            if depth > MAX_EVENT_DEPTH:
                raise ValueError(f"{what} nests deeper than {MAX_EVENT_DEPTH} levels; flatten it")
            items = v.values() if isinstance(v, Mapping) else v
            stack.extend((x, depth + 1) for x in items)
        elif isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{what} holds a number that is not finite ({v}); send finite numbers only")
        elif v is not None and not isinstance(v, str | int | float | bool):
            raise ValueError(f"{what} holds a {type(v).__name__}; send JSON values only")
    size = len(json.dumps(value, ensure_ascii=False, default=str))
    if size > MAX_EVENT_BYTES:
        raise ValueError(f"{what} is {size} bytes as JSON; the limit is {MAX_EVENT_BYTES}")


def _position(attrs: Mapping[str, Any]) -> int | None:
    pos = attrs.get("position")
    if pos is None:
        return None
    if not isinstance(pos, Mapping):
        raise ValueError("event_attributes.position must be an object")
    ordinal = pos.get("ordinal")
    if ordinal is None:
        return None
    if (
        isinstance(ordinal, bool)
        or not isinstance(ordinal, int | float)
        or not math.isfinite(ordinal)
        or ordinal != int(ordinal)
        or not 0 <= ordinal <= MAX_POSITION
    ):
        raise ValueError(
            f"event_attributes.position.ordinal must be a whole number from 0 to {MAX_POSITION}, got {ordinal!r}"
        )
    return int(ordinal)


def _text(d: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            raise ValueError(f"{key} is missing")
        return None
    if not isinstance(v, str | int):
        raise ValueError(f"{key} must be a string, got {type(v).__name__}")
    s = str(v).strip()
    if len(s) > MAX_ID_CHARS:
        raise ValueError(f"{key} is {len(s)} characters; the limit is {MAX_ID_CHARS}")
    return s


# Identifying details a ranking never needs: dropped from the stored record wherever they appear.
PRIVATE_KEYS = frozenset({"ip", "ip_address", "user_agent", "browser", "email", "phone", "address"})


def scrub(value: Any) -> Any:
    """``value`` without :data:`PRIVATE_KEYS` at any depth."""
    if isinstance(value, Mapping):
        return {k: scrub(v) for k, v in value.items() if str(k).lower() not in PRIVATE_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def parse_event(d: Mapping[str, Any], *, now: float | None = None) -> Event:
    """An :class:`Event` from a UBI ``ubi_events`` document; ValueError says what is wrong."""
    if not isinstance(d, Mapping):
        raise ValueError(f"an event must be a JSON object, got {type(d).__name__}")
    check_document(d)
    attrs = d.get("event_attributes")
    attrs = {} if attrs is None else attrs
    if not isinstance(attrs, Mapping):
        raise ValueError("event_attributes must be an object")
    obj = attrs.get("object")
    obj = {} if obj is None else obj
    if not isinstance(obj, Mapping):
        raise ValueError("event_attributes.object must be an object")
    action = _text(d, "action_name", required=True)
    client = _client_id(d)
    assert action is not None
    return Event(
        action_name=action,
        client_id=client,
        timestamp=parse_timestamp(d.get("timestamp"), now=now),
        query_id=_text(d, "query_id"),
        object_id=_text(obj, "object_id"),
        object_id_field=_text(obj, "object_id_field"),
        session_id=_text(d, "session_id") or _text(attrs, "session_id"),
        position=_position(attrs),
        user_query=_text(d, "user_query") if isinstance(d.get("user_query"), str) else None,
        raw=scrub(d),
    )


def _client_id(d: Mapping[str, Any]) -> str:
    """The shopper id, under the same rule as every id in a path, so that the shopper can be
    erased again (``DELETE /v1/users/{id}``)."""
    return check_id(_text(d, "client_id", required=True), what="client_id")


def parse_query(d: Mapping[str, Any], *, now: float | None = None) -> QueryRecord:
    if not isinstance(d, Mapping):
        raise ValueError(f"a query record must be a JSON object, got {type(d).__name__}")
    qid = _text(d, "query_id", required=True)
    client = _client_id(d)
    assert qid is not None
    ids = d.get("query_response_object_ids") or []
    return QueryRecord(
        query_id=qid,
        client_id=client,
        user_query=str(d.get("user_query") or ""),
        timestamp=parse_timestamp(d.get("timestamp"), now=now),
        object_ids=tuple(str(i) for i in ids[:1000]) if isinstance(ids, list) else (),
    )


@dataclass
class UbiLog:
    events: list[Event] = field(default_factory=list)
    queries: list[QueryRecord] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def _lines(path: Path) -> Iterator[tuple[str, int, str]]:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith("/"):
                    continue
                with zf.open(name) as fh:
                    for n, line in enumerate(io.TextIOWrapper(fh, encoding="utf-8"), start=1):
                        yield f"{path.name}:{name}", n, line
    else:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                yield path.name, n, line


def _kind_of(doc: Mapping[str, Any], hint: str | None) -> str:
    if hint:
        return "queries" if "quer" in hint else "events"
    return "events" if "action_name" in doc else "queries"


def read_ubi_log(path: str | Path) -> UbiLog:
    """Every event and query record in a UBI log file (see the module doc for the shapes)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path} does not exist; give a UBI log (NDJSON, JSONL or a .zip of one)")
    out = UbiLog()
    pending_index: str | None = None
    lines = list(_lines(path))
    first = next((ln for _, _, ln in lines if ln.strip()), "")
    if first.lstrip().startswith("["):  # a JSON array of documents
        try:
            docs = json.loads("".join(ln for _, _, ln in lines))
        except json.JSONDecodeError as e:
            raise BadInputError(f"{path}: not valid JSON ({e}); send a JSON array or JSON lines") from None
        lines = [(path.name, i + 1, json.dumps(d)) for i, d in enumerate(docs)]
    for source, n, line in lines:
        text = line.strip()
        if not text:
            continue
        hint = None
        if "\t" in text and not text.startswith("{"):
            hint, text = text.split("\t", 1)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            out.errors.append(RowError(source, n, f"not JSON ({e.msg})"))
            continue
        if isinstance(doc, dict) and len(doc) == 1 and next(iter(doc)) in ("index", "create"):
            action = next(iter(doc.values()))
            pending_index = action.get("_index") if isinstance(action, dict) else None
            continue
        hint = hint or pending_index
        pending_index = None
        try:
            if _kind_of(doc, hint) == "queries":
                out.queries.append(parse_query(doc))
            else:
                out.events.append(parse_event(doc))
        except (ValueError, TypeError) as e:
            out.errors.append(RowError(source, n, str(e)))
    return out


def resolve_products(
    events: Iterable[Event], ids_for_eans: Mapping[str, str], known: set[str]
) -> list[Event]:
    """Events with ``product_id`` set where ``object_id`` names a product of this catalog:
    directly (``object_id_field`` empty or an id field) or by EAN (``primary_ean``, ``ean``)."""
    from dataclasses import replace

    out = []
    for e in events:
        pid = None
        fld = (e.object_id_field or "").lower()
        if e.object_id is not None:
            if fld in EAN_FIELDS:
                pid = ids_for_eans.get(e.object_id)
            elif fld in ID_FIELDS and e.object_id in known:
                pid = e.object_id
        out.append(replace(e, product_id=pid) if pid != e.product_id else e)
    return out


@dataclass
class EventWriteReport:
    accepted: int = 0
    duplicates: int = 0
    resolved: int = 0  # events naming a product of this catalog
    queries: int = 0
    seconds: float = 0.0
    stored: list[Event] = field(default_factory=list, repr=False)  # the newly stored events


@runtime_checkable
class EventStore(Protocol):
    """Durable shopper events. ``add`` returns only after the events are stored for good."""

    name: str

    def add(self, events: Sequence[Event], queries: Sequence[QueryRecord] = ()) -> EventWriteReport: ...

    def events(self, *, since: float | None = None) -> list[Event]: ...

    def erase_client(self, client_id: str) -> int:
        """Remove every event and query of one shopper; returns how many records went."""
        ...

    def expire(self, before: float, *, after: float | None = None) -> int:
        """Remove events and queries older than ``before`` (epoch seconds), and those dated
        later than ``after`` when given (records from a clock far ahead)."""
        ...

    def queries(self, ids: Sequence[str]) -> dict[str, QueryRecord]:
        """The stored query records of these ids that the store can still find (recent ones at
        least), to check that an event names a product its search showed."""
        ...


@dataclass
class Pulled:
    """What other processes stored since the last :meth:`FollowedEvents.pull`."""

    events: list[Event] = field(default_factory=list)
    erased: set[str] = field(default_factory=set)  # client_hash of each shopper erased


@runtime_checkable
class FollowedEvents(Protocol):
    """An event store several processes share, each following the others' writes (embedded)."""

    def pull(self) -> Pulled:
        """The events other processes stored and the shoppers they erased, since the last pull."""
        ...
