"""Small response helpers for route functions."""

from __future__ import annotations

from typing import TypeVar

from aws_lambda_powertools.event_handler import Response, content_types

T = TypeVar("T")


def created(body: T) -> Response[T]:
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=body)
