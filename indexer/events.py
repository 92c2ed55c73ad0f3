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
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from indexer.errors import BadInputError, RowError

MAX_ID_CHARS = 256
# Fields that name the product in ``object_id``; other fields (an ASIN, a filter value) stay
# unresolved: the event is stored, it just names nothing in this catalog.
ID_FIELDS = frozenset({"", "id", "product_id", "doc_id", "_id", "internal_id"})
EAN_FIELDS = frozenset({"ean", "primary_ean", "gtin", "ean13"})


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
        }

    @classmethod
    def from_stored(cls, d: Mapping[str, Any]) -> Event:
        return cls(
            action_name=d["action_name"],
            client_id=d["client_id"],
            timestamp=float(d["timestamp"]),
            query_id=d.get("query_id"),
            object_id=d.get("object_id"),
            object_id_field=d.get("object_id_field"),
            session_id=d.get("session_id"),
            position=d.get("position"),
            user_query=d.get("user_query"),
            product_id=d.get("product_id"),
            raw=d.get("raw") or {},
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


def parse_timestamp(v: Any) -> float:
    """Epoch seconds from epoch milliseconds / seconds (numbers) or an ISO 8601 string."""
    if isinstance(v, bool) or v is None:
        raise ValueError("timestamp is missing; send epoch milliseconds or an ISO 8601 time")
    if isinstance(v, int | float):
        t = float(v)
        return t / 1000.0 if t > 1e11 else t  # 1e11 s is the year 5138: larger means milliseconds
    if isinstance(v, str):
        s = v.strip()
        try:
            return parse_timestamp(float(s))
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp {v!r} is neither epoch milliseconds nor ISO 8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise ValueError(f"timestamp must be a number or a string, got {type(v).__name__}")


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


def parse_event(d: Mapping[str, Any]) -> Event:
    """An :class:`Event` from a UBI ``ubi_events`` document; ValueError says what is wrong."""
    if not isinstance(d, Mapping):
        raise ValueError(f"an event must be a JSON object, got {type(d).__name__}")
    attrs = d.get("event_attributes")
    attrs = {} if attrs is None else attrs
    if not isinstance(attrs, Mapping):
        raise ValueError("event_attributes must be an object")
    obj = attrs.get("object")
    obj = {} if obj is None else obj
    if not isinstance(obj, Mapping):
        raise ValueError("event_attributes.object must be an object")
    pos = attrs.get("position") or {}
    ordinal = pos.get("ordinal") if isinstance(pos, Mapping) else None
    action = _text(d, "action_name", required=True)
    client = _text(d, "client_id", required=True)
    assert action is not None and client is not None
    return Event(
        action_name=action,
        client_id=client,
        timestamp=parse_timestamp(d.get("timestamp")),
        query_id=_text(d, "query_id"),
        object_id=_text(obj, "object_id"),
        object_id_field=_text(obj, "object_id_field"),
        session_id=_text(d, "session_id") or _text(attrs, "session_id"),
        position=int(ordinal) if isinstance(ordinal, int | float) and not isinstance(ordinal, bool) else None,
        user_query=_text(d, "user_query") if isinstance(d.get("user_query"), str) else None,
        raw=scrub(d),
    )


def parse_query(d: Mapping[str, Any]) -> QueryRecord:
    if not isinstance(d, Mapping):
        raise ValueError(f"a query record must be a JSON object, got {type(d).__name__}")
    qid = _text(d, "query_id", required=True)
    client = _text(d, "client_id", required=True)
    assert qid is not None and client is not None
    ids = d.get("query_response_object_ids") or []
    return QueryRecord(
        query_id=qid,
        client_id=client,
        user_query=str(d.get("user_query") or ""),
        timestamp=parse_timestamp(d.get("timestamp")),
        object_ids=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
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

    def expire(self, before: float) -> int:
        """Remove events and queries older than ``before`` (epoch seconds)."""
        ...
