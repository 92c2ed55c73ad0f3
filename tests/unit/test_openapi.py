"""The OpenAPI document matches the service (issue 12, point 10): one declared error shape for
every status a route can return, strict JSON bodies, finite numbers, /metrics as text."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from plugin_api.cli.main import main
from plugin_api.http.app import create_app
from plugin_api.http.schemas import ErrorOut
from plugin_api.settings import Settings
from tests.conftest import FIXTURES

KEY = "test-key-openapi"
H = {"X-API-Key": KEY}
ERROR_REF = "#/components/schemas/ErrorOut"
TRANSPORT = {"400", "408", "413"}  # any request can meet the transport limits
# What each operation can answer besides 200 (the code paths behind each are in the routes).
STATUSES = {
    ("get", "/v1/search"): {"422", "429", "503"},
    ("post", "/v1/search"): {"422", "429", "503"},
    ("get", "/v1/suggest"): {"422", "429", "503"},
    ("get", "/v1/recommend/similar/{product_id}"): {"404", "422", "429", "503"},
    ("get", "/v1/recommend/user/{user_id}"): {"422", "429", "503"},
    ("post", "/v1/events"): {"401", "422", "429", "503"},
    ("post", "/v1/reviews"): {"401", "422", "429", "503"},
    ("post", "/v1/products"): {"401", "422", "429", "503"},
    ("put", "/v1/products/{product_id}"): {"401", "422", "429", "503"},
    ("delete", "/v1/products/{product_id}"): {"401", "404", "422", "429", "503"},
    ("delete", "/v1/users/{user_id}"): {"401", "404", "422", "429", "503"},
    ("get", "/healthz"): set(),
    ("get", "/readyz"): {"429", "503"},
    ("get", "/metrics"): set(),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("openapi")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPRANK_CACHE_DIR", str(root / "cache"))
        mp.setenv("SHOPRANK_EMBEDDER", "hashing")
        catalog = str(FIXTURES / "catalog.jsonl")
        assert main(["index", "--catalog", catalog, "--quiet", "--data-dir", str(root / "data")]) == 0
    s = Settings(
        data_dir=root / "data", cache_dir=root / "cache", embedder="hashing", api_keys=(KEY,), device="cpu"
    )
    with TestClient(create_app(s)) as c:
        yield c


@pytest.fixture(scope="module")
def doc(client):
    return client.get("/openapi.json").json()


def _error_shape(r) -> dict:
    body = r.json()
    ErrorOut.model_validate(body)  # the declared shape, strictly
    assert set(body) == {"error", "detail"} and body["error"]
    return body


def test_every_operation_declares_each_status_it_can_return_with_the_one_error_schema(doc):
    ops = {(m, p): op for p, methods in doc["paths"].items() for m, op in methods.items()}
    assert set(ops) == set(STATUSES)
    for key, op in ops.items():
        declared = set(op["responses"]) - {"200"}
        assert STATUSES[key] | TRANSPORT <= declared, key
        for code in declared:
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, (key, code)
        if "429" in declared:
            assert op["responses"]["429"]["headers"]["Retry-After"]["required"] is True


def test_fastapis_validation_error_schema_is_gone_and_ours_is_precise(doc):
    text = json.dumps(doc)
    assert "HTTPValidationError" not in text and "ValidationError" not in doc["components"]["schemas"]
    error = doc["components"]["schemas"]["ErrorOut"]
    assert error["required"] == ["error"]
    detail = error["properties"]["detail"]["anyOf"]
    assert {"type": "array", "items": {"$ref": "#/components/schemas/FieldProblem"}} in detail
    assert doc["components"]["schemas"]["FieldProblem"]["required"] == ["field", "message"]
    # and nothing is left in pydantic's words (``ge``/``le`` survive in some unions), which a
    # client or schemathesis would not read as bounds
    leftovers = []

    def walk(x, path):
        if isinstance(x, dict):
            for k, v in x.items():
                if path and path[-1] == "properties":
                    walk(v, [*path, k])
                    continue
                if k in {"ge", "le", "gt", "lt", "min_length", "max_length", "allow_inf_nan", "strict"}:
                    leftovers.append("/".join([*path, k]))
                walk(v, [*path, k])
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, [*path, str(i)])

    walk(doc, [])
    assert leftovers == []


def test_metrics_are_declared_and_served_as_text(client, doc):
    content = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "text/plain" in content and "application/json" not in content
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


def test_health_and_ready_are_typed(client, doc):
    for path, model in (("/healthz", "HealthOut"), ("/readyz", "ReadyOut")):
        ok = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{model}"}
    assert doc["components"]["schemas"]["ReadyOut"]["required"] == ["status", "products", "events"]
    assert client.get("/readyz").json()["status"] == "ready"


def test_writes_declare_the_api_key_scheme_and_events_take_it_optionally(doc):
    assert doc["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": doc["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for method, path in [
        ("post", "/v1/reviews"),
        ("post", "/v1/products"),
        ("put", "/v1/products/{product_id}"),
        ("delete", "/v1/products/{product_id}"),
        ("delete", "/v1/users/{user_id}"),
    ]:
        assert doc["paths"][path][method]["security"] == [{"ApiKey": []}], path
    assert doc["paths"]["/v1/events"]["post"]["security"] == [{"ApiKey": []}, {}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"q": "laptop", "k": True}, "k"),
        ({"q": "laptop", "k": "5"}, "k"),
        ({"q": "laptop", "explain": "true"}, "explain"),
        ({"q": "laptop", "price_min": False}, "price_min"),
        ({"q": "   "}, "q"),
        ({"q": "laptop", "weights": {"clicks": 1.0}}, "weights"),
        ({"q": "laptop", "weights": {"bm25": 1e6}}, "weights.bm25"),
        ({"q": "laptop", "weights": {"bm25": True}}, "weights.bm25"),
    ],
)
def test_search_bodies_are_strict(client, body, field):
    r = client.post("/v1/search", json=body)
    assert r.status_code == 422, r.text
    assert _error_shape(r)["detail"][0]["field"] == field


def test_true_is_no_number_in_a_body_but_query_strings_still_parse_numbers(client):
    r = client.post("/v1/search", json={"q": "laptop", "k": True})
    assert r.status_code == 422 and "integer" in _error_shape(r)["error"]
    assert client.get("/v1/search", params={"q": "laptop", "k": "5"}).json()["k"] == 5
    assert client.post("/v1/search", json={"q": "laptop", "k": 5.0}).json()["k"] == 5


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_fusion_weights_are_finite(client, raw):
    body = '{"q": "laptop", "weights": {"bm25": RAW}}'.replace("RAW", raw)
    r = client.post("/v1/search", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    problem = {"field": "weights.bm25", "message": "Input should be a finite number"}
    assert _error_shape(r)["detail"][0] == problem


@pytest.mark.parametrize(
    ("content", "content_type", "says"),
    [
        ('{"q": "laptop",', "application/json", "not valid JSON"),
        ("q=laptop", "application/x-www-form-urlencoded", "not JSON"),
        ('{"q": "laptop"}', "text/plain", "not JSON"),
        ("", "application/json", "missing"),
        (b"\xff\xfe{", "application/json", "JSON"),
        ("[" * 100_000, "application/json", "could not be read"),  # too deep for the JSON parser
    ],
)
def test_a_body_that_is_not_json_answers_in_the_one_error_shape(client, content, content_type, says):
    r = client.post("/v1/search", content=content, headers={"Content-Type": content_type})
    assert r.status_code == 422, r.text
    body = _error_shape(r)
    assert body["detail"][0]["field"] == "body" and says in body["detail"][0]["message"]
    assert "application/json" in body["error"]


def test_unknown_paths_and_methods_answer_in_the_one_error_shape(client):
    r = client.get("/v1/nope")
    assert r.status_code == 404 and "openapi.json" in _error_shape(r)["error"]
    r = client.patch("/v1/search", json={"q": "x"})
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert "PATCH" in _error_shape(r)["error"]
    r = client.request("OPTIONS", "/v1/products/p01")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, PUT"
    r = client.head("/healthz")  # FastAPI routes take only the methods they name
    assert r.status_code == 405 and r.headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"client_id": True}, "events.0.client_id"),
        ({"action_name": 7}, "events.0.action_name"),
        ({"timestamp": True}, "events.0.timestamp"),
        ({"query_id": 1.5}, "events.0.query_id"),
        ({"event_attributes": {"position": {"ordinal": "3"}}}, "events.0.event_attributes.position.ordinal"),
    ],
)
def test_event_fields_are_typed_strictly(client, event, field):
    import time

    base = {"action_name": "click", "client_id": "c1", "timestamp": int(time.time() * 1000)}
    r = client.post("/v1/events", json={"events": [{**base, **event}]})
    assert r.status_code == 422, r.text
    assert _error_shape(r)["detail"][0]["field"] == field


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"price": "5"}, "products.0.price"),
        ({"price": True}, "products.0.price"),
        ({"in_stock": "yes"}, "products.0.in_stock"),
        ({"attributes": {"weight_kg": [1]}}, "products.0.attributes.weight_kg"),
        ({"id": True}, "products.0.id"),
        ({"colour": "red"}, "products.0.colour"),
    ],
)
def test_product_records_are_typed_strictly(client, record, field):
    r = client.post("/v1/products", json={"products": [{"id": "n1", "title": "Gizmo", **record}]}, headers=H)
    assert r.status_code == 422, r.text
    assert _error_shape(r)["detail"][0]["field"] == field


def test_a_put_body_has_no_id_of_its_own(client):
    r = client.put("/v1/products/n2", json={"id": "n2", "title": "Gizmo"}, headers=H)
    assert r.status_code == 422 and _error_shape(r)["detail"][0]["field"] == "id"
    assert client.put("/v1/products/n2", json={"title": "Gizmo"}, headers=H).status_code == 200
