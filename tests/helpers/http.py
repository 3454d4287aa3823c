"""An httpx client for the local runner, plus checks every API response must pass."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers.users import User


def client(base_url: str, *, user: User | None = None, api_key: str | None = None, **kwargs: Any) -> httpx.Client:
    """A client that sends the user's JWT (Authorization: Bearer) or an API key (x-api-key)."""
    headers = dict(kwargs.pop("headers", {}) or {})
    if user is not None:
        headers["Authorization"] = f"Bearer {user.jwt}"
    if api_key is not None:
        headers["x-api-key"] = api_key
    return httpx.Client(base_url=base_url, headers=headers, timeout=kwargs.pop("timeout", 30.0), **kwargs)


def envelope(response: httpx.Response) -> dict[str, Any]:
    """The JSON envelope {data, error, meta}; fails the test when the response is not one."""
    assert response.headers.get("content-type", "").startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body, dict) and {"data", "error", "meta"} <= set(body), body
    return body


def ok_data(response: httpx.Response, status: int = 200) -> Any:
    """The data of a successful response, checking the status and that no error is set."""
    assert response.status_code == status, f"{response.status_code} != {status}: {response.text}"
    body = envelope(response)
    assert body["error"] is None, body
    return body["data"]


def error_of(response: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    """The error object of a failed response, checking the status (one of ``status``) and the envelope."""
    expected = status if isinstance(status, tuple) else (status,)
    assert response.status_code in expected, f"{response.status_code} not in {expected}: {response.text}"
    body = envelope(response)
    assert body["data"] is None, body
    assert isinstance(body["error"], dict) and body["error"]["code"] and body["error"]["message"], body
    return body["error"]
