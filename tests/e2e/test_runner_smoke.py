"""The local runner over HTTP: a function answers, and API Gateway's own answers (404, CORS, 413) match."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_health_over_http(runner_url: str) -> None:
    response = httpx.get(f"{runner_url}/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data", "error", "meta"}
    assert body["error"] is None
    assert body["data"]["status"] == "ok"
    assert response.headers["x-request-id"]
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["apigw-requestid"]


def test_request_id_is_the_api_gateway_request_id(runner_url: str) -> None:
    first = httpx.get(f"{runner_url}/v1/health").headers["x-request-id"]
    second = httpx.get(f"{runner_url}/v1/health").headers["x-request-id"]
    assert first != second
    uuid.UUID(first)


def test_unknown_route_is_api_gateway_404(runner_url: str) -> None:
    for method, path in [
        ("GET", "/v1/nope"),
        ("PUT", "/v1/health"),
        ("GET", "/"),
        ("TRACE", "/v1/health"),
        ("PROPFIND", "/v1/health"),
    ]:
        response = httpx.request(method, f"{runner_url}{path}")
        assert response.status_code == 404, (method, path)
        assert response.json() == {"message": "Not Found"}


def test_cors_preflight(runner_url: str) -> None:
    response = httpx.options(
        f"{runner_url}/v1/orgs",
        headers={
            "Origin": "https://app.example.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"].split(",")
    allowed = response.headers["access-control-allow-headers"].split(",")
    assert {"authorization", "content-type", "x-api-key", "idempotency-key"} <= set(allowed)
    assert response.headers["access-control-max-age"] == "600"


def test_cors_headers_on_responses(runner_url: str) -> None:
    response = httpx.get(f"{runner_url}/v1/health", headers={"Origin": "https://app.example.test"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert set(response.headers["access-control-expose-headers"].split(",")) == {"x-request-id", "retry-after"}
    assert "access-control-allow-origin" not in httpx.get(f"{runner_url}/v1/health").headers


def test_body_over_10_mb_is_413(runner_url: str) -> None:
    response = httpx.post(
        f"{runner_url}/v1/orgs",
        content=b"x" * (10 * 1024 * 1024 + 1),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json() == {"message": "Request Entity Too Large"}
