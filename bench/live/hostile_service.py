"""``bench.hostile_inputs`` cases 8–10: the service as a whole. A rebuild by another process while
the server runs, searches through OpenSearch, and the OpenAPI document against the answers."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx

from bench.live.hostile_client import ERROR_KEYS, KEY, Bench, product
from bench.live.server import FIXTURE, NODE, Server, Shoprank, drop_opensearch, node_answers


def case_rebuild(b: Bench) -> None:
    """Case 8: a product written through the API, then ``shoprank index`` twice by another process
    (the fixture, then the fixture with p01 retitled): is the product still served, the new version
    live, and does a later write land in it."""
    from indexer.embedded.store import EmbeddedStore

    status, ms, _ = b.call(
        "POST",
        "/v1/products",
        key=True,
        body={"products": [product("hi-rebuild-1", "Hostile rebuild survivor")]},
    )
    b.row(8, "POST /v1/products hi-rebuild-1 before a rebuild", "200", status, ms, "", status == 200)
    if status == 200:
        b.known["hi-rebuild-1"] = "Hostile rebuild survivor"
    store = EmbeddedStore(b.srv.sr.data / "index")
    for n, (catalog, marker) in enumerate(((FIXTURE, None), (None, "Hostile marker title from a rebuild"))):
        if catalog is None:  # the fixture with one title changed: proves the switch, not just the carry
            catalog = _marked_catalog(b, str(marker))
        _rebuild(b, store, n, catalog, marker)
    _write_after_rebuild(b, store)
    b.consistency(8, "after the rebuilds: searches + similar, hit id = record")


def _marked_catalog(b: Bench, marker: str) -> Path:
    """The fixture with p01's title set to ``marker`` (and ``b.known`` told so)."""
    catalog = b.srv.sr.work / "catalog-marked.jsonl"
    rows = [json.loads(ln) for ln in FIXTURE.read_text().splitlines() if ln.strip()]
    rows[0]["title"] = marker
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b.known[rows[0]["id"]] = marker
    return catalog


def _rebuild(b: Bench, store: Any, n: int, catalog: Path, marker: str | None) -> None:
    """``shoprank index`` of ``catalog`` by another process; then, for up to 3 s, whether the
    server serves the API product and (with ``marker``) the new p01 title."""
    before = store.current_version()
    t0 = time.monotonic()
    try:
        b.srv.sr.index(catalog, b.srv.sr.work / f"rebuild-{n}.log", timeout=120)
        built = f"built in {time.monotonic() - t0:.1f} s"
    except RuntimeError as e:
        built = str(e)
    t1 = time.monotonic()
    served = False
    while not served and time.monotonic() - t1 <= 3.0:
        sim = b.call("GET", "/v1/recommend/similar/hi-rebuild-1", params={"k": 1})[0]
        d = b.call("GET", "/v1/search", params={"q": marker or "hostile rebuild survivor", "k": 10})[2]
        titles = {x["id"]: (x.get("product") or {}).get("title") for x in (d or {}).get("results", [])}
        hit = titles.get("p01") == marker if marker else "hi-rebuild-1" in titles
        count = (b.call("GET", "/readyz")[2] or {}).get("products")
        served = sim == 200 and hit and count == len(b.known)
        time.sleep(0 if served else 0.2)
    what = f"`shoprank index` of the fixture{' with p01 retitled' if marker else ''} by another process"
    b.row(
        8,
        what,
        "API product served, new version live ≤ 3 s",
        "served" if served else "not served",
        (time.monotonic() - t1) * 1000,
        f"{built}; version changed {store.current_version() != before}; similar {sim}, "
        f"{'new p01 title' if marker else 'API product'} in search {hit}, /readyz products {count}",
        served,
    )


def _write_after_rebuild(b: Bench, store: Any) -> None:
    """A product written after the rebuilds must be on disk in the version CURRENT names."""
    status, ms, _ = b.call(
        "POST",
        "/v1/products",
        key=True,
        body={"products": [product("hi-rebuild-2", "Hostile after the rebuild")]},
    )
    if status == 200:
        b.known["hi-rebuild-2"] = "Hostile after the rebuild"
    ids = {p.id for p in store.load().products}
    b.row(
        8,
        "a write after the rebuild lands in the served version",
        "200, on disk in CURRENT",
        status,
        ms,
        f"hi-rebuild-1/2 in the live version on disk: {'hi-rebuild-1' in ids}/{'hi-rebuild-2' in ids}",
        status == 200 and {"hi-rebuild-1", "hi-rebuild-2"} <= ids,
    )


def case_opensearch(b: Bench, args: argparse.Namespace, work: Path) -> None:
    """Case 9 (with ``--opensearch`` and a node): 20 searches through a server on the node."""
    note = "the outage itself (node stopped under load) is covered by tests/integration/test_cluster.py"
    if not (args.opensearch and node_answers()):
        why = "not requested (--opensearch)" if not args.opensearch else f"no node answers at {NODE}"
        b.row(9, "OpenSearch: searches through the node", "skipped", "skipped", None, f"{why}; {note}", True)
        return
    sr = Shoprank(work, work / "os-data", "opensearch", f"bench-hostile-{int(time.time())}")
    sr.env["SHOPRANK_API_KEYS"] = json.dumps([KEY])
    srv = Server(sr, "hostile-os")
    try:
        sr.index(FIXTURE, work / "os-index.log")
        srv.start()
        codes: dict[str, int] = {}
        t0 = time.perf_counter()
        for i in range(20):
            s = srv.get(
                "/v1/search", q=f"notebook {i}", k=10, pipeline="hybrid" if i % 2 else "full"
            ).status_code
            codes[str(s)] = codes.get(str(s), 0) + 1
        ms = (time.perf_counter() - t0) * 1000
        tb = srv.log.read_text(errors="replace").count("Traceback")
        b.row(
            9,
            "OpenSearch: 20 searches (full/hybrid) with ef_search",
            "200 each",
            str(codes),
            ms,
            f"tracebacks in the log {tb}; {note}",
            codes == {"200": 20} and tb == 0,
        )
    finally:
        srv.kill()
        drop_opensearch(sr)


def case_openapi(b: Bench) -> None:
    """Case 10: the OpenAPI document against the service (schemas, statuses, media types)."""
    status, ms, doc = b.call("GET", "/openapi.json")
    text = json.dumps(doc)
    b.row(
        10,
        "GET /openapi.json: no FastAPI validation schemas",
        "200, none",
        status,
        ms,
        f"HTTPValidationError {text.count('HTTPValidationError')}×, ValidationError {text.count('ValidationError')}×",
        status == 200 and "ValidationError" not in text,
    )
    paths: dict[str, Any] = (doc or {}).get("paths", {})
    _metrics_media_type(b, paths)
    missing = [
        gap for path, ops in paths.items() for method, op in ops.items() for gap in _gaps(path, method, op)
    ]
    b.row(
        10,
        "every route: 400/408/413 (+422/429/503 on /v1, 401 with a key, 404 by id), ErrorOut bodies",
        "all declared",
        f"{len(missing)} gaps",
        None,
        "; ".join(missing[:6]) or "none",
        not missing,
    )
    _invalid_json(b)
    st, ms3, d = b.call("GET", "/v1/nowhere")
    b.row(
        10,
        "GET /v1/nowhere (unknown path)",
        "404 {error, detail}",
        st,
        ms3,
        "",
        st == 404 and isinstance(d, dict) and set(d) == ERROR_KEYS,
    )


def _metrics_media_type(b: Bench, paths: dict[str, Any]) -> None:
    """/metrics must declare and answer text/plain."""
    m200 = paths.get("/metrics", {}).get("get", {}).get("responses", {}).get("200", {}).get("content", {})
    r = httpx.get(b.srv.base + "/metrics", timeout=10)
    b.row(
        10,
        "/metrics: declared and answered media type",
        "text/plain",
        r.status_code,
        None,
        f"declared {sorted(m200)}; answered {r.headers.get('content-type')}",
        list(m200) == ["text/plain"] and r.headers.get("content-type", "").startswith("text/plain"),
    )


def _gaps(path: str, method: str, op: dict[str, Any]) -> list[str]:
    """What one operation fails to declare: the error statuses it can answer, ErrorOut bodies for
    them, Retry-After on 429."""
    missing: list[str] = []
    declared = set(op.get("responses", {}))
    need = {"400", "408", "413"} | ({"422", "429", "503"} if path.startswith("/v1/") else set())
    if any("ApiKey" in s for s in op.get("security", [])) and {} not in op.get("security", []):
        need.add("401")
    if method in ("get", "delete") and "{product_id}" in path:
        need.add("404")
    if lack := sorted(need - declared):
        missing.append(f"{method.upper()} {path}: {','.join(lack)}")
    for code, resp in op.get("responses", {}).items():
        if code.isdigit() and int(code) >= 400:
            ref = resp.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
            if not ref.endswith("/ErrorOut"):
                missing.append(f"{method.upper()} {path} {code}: schema {ref or 'none'}")
            if code == "429" and "Retry-After" not in resp.get("headers", {}):
                missing.append(f"{method.upper()} {path} 429: no Retry-After")
    return missing


def _invalid_json(b: Bench) -> None:
    """Invalid JSON bodies get 422 with ``{error, detail: [{field, message}]}``."""
    for request, raw in (
        ("POST /v1/search with invalid JSON", b'{"q": "notebook",'),
        ("POST /v1/events with invalid JSON", b"[not json"),
    ):
        st, ms2, d = b.call("POST", request.split()[1], raw=raw)
        shape = sorted(d) if isinstance(d, dict) else None
        det = (d or {}).get("detail") if isinstance(d, dict) else None
        fields = isinstance(det, list) and all(
            isinstance(x, dict) and set(x) == {"field", "message"} for x in det
        )
        b.row(
            10,
            request,
            "422 {error, detail:[{field, message}]}",
            st,
            ms2,
            f"keys {shape}; detail ok {fields}",
            st == 422 and shape == ["detail", "error"] and fields,
        )
