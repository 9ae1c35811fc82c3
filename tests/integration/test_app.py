"""The HTTP face on a real database (SQLite and PostgreSQL): middleware, operations routes, docs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.auth import public
from api.keys import METRICS
from core.errors import NotFound
from core.settings import Settings
from tests.conftest import SettingsFactory

Client = TestClient[Any, Any]


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client: Client) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "checks": {"database": "ok"}}


async def test_readyz_checks_redis_when_configured(
    aiohttp_client: Any,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    settings = make_settings(
        database_url=migrated_database_url, redis_url=redis_url, redis_prefix=redis_prefix
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_is_503_when_redis_is_down(
    aiohttp_client: Any,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    unused_tcp_port: int,
) -> None:
    settings = make_settings(
        database_url=migrated_database_url, redis_url=f"redis://127.0.0.1:{unused_tcp_port}/0"
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body == {"status": "unavailable", "checks": {"database": "ok", "redis": "unavailable"}}


async def test_readyz_is_503_when_the_schema_is_missing(
    aiohttp_client: Any, make_settings: SettingsFactory, database_url: str
) -> None:
    # An unreachable database is the same to the probe as one that refuses the query.
    settings = make_settings(database_url=database_url)
    client = await aiohttp_client(create_app(settings))
    assert (await client.get("/readyz")).status == 200  # SELECT 1 needs no tables


async def test_request_id_is_generated_or_echoed(client: Client) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 36
    echoed = await client.get("/healthz", headers={"X-Request-ID": "edge-abc.123"})
    assert echoed.headers["X-Request-ID"] == "edge-abc.123"
    hostile = await client.get("/healthz", headers={"X-Request-ID": "x" * 300})
    assert hostile.headers["X-Request-ID"] != "x" * 300


async def test_unknown_route_is_a_json_404(client: Client) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status == 404
    assert await response.json() == {
        "error": {"code": "not_found", "message": "Not Found", "details": {}}
    }
    assert "X-Request-ID" in response.headers


async def test_wrong_method_is_a_json_405_with_allow(client: Client) -> None:
    response = await client.post("/healthz")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def _app_with_failing_routes(settings: Settings) -> web.Application:
    app = create_app(settings)

    @public()
    async def explode(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals: password=hunter2")

    @public()
    async def missing(request: web.Request) -> web.Response:
        raise NotFound("file_not_found", "No such file", details={"id": "f1"})

    app.router.add_get("/boom", explode)
    app.router.add_get("/missing", missing)
    return app


async def test_a_crash_is_a_500_that_leaks_nothing_and_logs_the_request_id(
    aiohttp_client: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(_app_with_failing_routes(settings))
    with caplog.at_level(logging.ERROR):
        response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status == 500
    body = await response.json()
    assert body == {
        "error": {
            "code": "internal_error",
            "message": "Internal server error",
            "details": {"request_id": "req-500"},
        }
    }
    assert "hunter2" not in await response.text()
    logged = [r for r in caplog.records if "http.unhandled_error" in r.getMessage()]
    assert len(logged) == 1
    assert "req-500" in str(logged[0].msg)
    assert logged[0].exc_info is not None


async def test_app_errors_keep_their_code_status_and_details(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(_app_with_failing_routes(settings))
    response = await client.get("/missing")
    assert response.status == 404
    assert await response.json() == {
        "error": {"code": "file_not_found", "message": "No such file", "details": {"id": "f1"}}
    }


async def test_security_headers_on_every_response(client: Client) -> None:
    for path in ("/healthz", "/nothing", "/api/v1/openapi.json"):
        response = await client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "Strict-Transport-Security" not in response.headers  # plain http here
    assert (await client.get("/api/v1/openapi.json")).headers["Cache-Control"] == "no-store"


async def test_hsts_when_served_over_https(
    aiohttp_client: Any, make_settings: SettingsFactory, migrated_database_url: str
) -> None:
    settings = make_settings(
        database_url=migrated_database_url, public_url="https://hub.example.com"
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/healthz")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


@pytest.fixture
async def cors_client(
    aiohttp_client: Any, make_settings: SettingsFactory, migrated_database_url: str
) -> Client:
    settings = make_settings(
        database_url=migrated_database_url, cors_allowed_origins="https://portal.example.com"
    )
    client: Client = await aiohttp_client(create_app(settings))
    return client


async def test_cors_preflight_from_an_allowed_origin(cors_client: Client) -> None:
    response = await cors_client.options(
        "/api/v1/openapi.json",
        headers={
            "Origin": "https://portal.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, Authorization",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://portal.example.com"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"


async def test_cors_preflight_from_an_unknown_origin_is_refused(cors_client: Client) -> None:
    response = await cors_client.options(
        "/healthz",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "cors_denied"
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_cors_preflight_with_an_unlisted_header_is_refused(cors_client: Client) -> None:
    response = await cors_client.options(
        "/healthz",
        headers={
            "Origin": "https://portal.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-Sneaky",
        },
    )
    assert response.status == 403
    assert "X-Sneaky" in (await response.json())["error"]["message"]


async def test_cors_simple_requests(cors_client: Client) -> None:
    allowed = await cors_client.get("/healthz", headers={"Origin": "https://portal.example.com"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://portal.example.com"
    assert "X-Request-ID" in allowed.headers["Access-Control-Expose-Headers"]
    assert "Origin" in allowed.headers["Vary"]
    other = await cors_client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert other.status == 200
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_metrics_count_requests_by_route_template(client: Client) -> None:
    await client.get("/healthz")
    await client.get("/healthz")
    await client.get("/nope/123")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in text
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "process_resident_memory_bytes" in text
    assert client.app is not None
    assert client.app[METRICS].http_in_flight._value.get() == 0


async def test_openapi_document_describes_the_routes(client: Client) -> None:
    from openapi_spec_validator import validate

    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    spec = await response.json()
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    assert set(spec["paths"]) >= {"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"}
    readyz = spec["paths"]["/readyz"]["get"]
    assert readyz["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReadinessBody"
    }
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert "head" not in spec["paths"]["/healthz"]


async def test_docs_page_and_its_assets(client: Client) -> None:
    page = await client.get("/api/docs")
    assert page.status == 200
    html = await page.text()
    assert "swagger-ui-bundle.js" in html
    assert "<script>" not in html  # no inline script: the CSP forbids it
    init = await client.get("/api/docs/init.js")
    assert "/api/v1/openapi.json" in await init.text()
    bundle = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert bundle.status == 200
    assert len(await bundle.read()) > 100_000


async def test_oversized_body_is_a_json_413(
    aiohttp_client: Any, make_settings: SettingsFactory, migrated_database_url: str
) -> None:
    settings = make_settings(database_url=migrated_database_url, max_request_bytes=2048)
    app = create_app(settings)

    @public()
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"size": len(await request.read())})

    app.router.add_post("/echo", echo)
    client = await aiohttp_client(app)
    assert (await (await client.post("/echo", data=b"x" * 100)).json()) == {"size": 100}
    response = await client.post("/echo", data=b"x" * 4096)
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "request_entity_too_large"


async def test_readyz_checks_clamd_when_configured(
    aiohttp_client: Any,
    make_settings: SettingsFactory,
    migrated_database_url: str,
    unused_tcp_port: int,
) -> None:
    settings = make_settings(
        database_url=migrated_database_url, clamd_url=f"tcp://127.0.0.1:{unused_tcp_port}"
    )
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"] == {"database": "ok", "clamd": "unavailable"}


@pytest.mark.databases("sqlite")
async def test_readyz_is_ok_with_a_live_clamd(
    aiohttp_client: Any, make_settings: SettingsFactory, migrated_database_url: str, tmp_path: Any
) -> None:
    from tests.clamd import run_clamd

    with run_clamd(tmp_path / "clamd") as clamd:
        settings = make_settings(database_url=migrated_database_url, clamd_url=clamd.url)
        client = await aiohttp_client(create_app(settings))
        response = await client.get("/readyz")
        assert response.status == 200
        assert (await response.json())["checks"] == {"database": "ok", "clamd": "ok"}
        await client.close()
