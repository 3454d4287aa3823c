"""The response envelope every JSON route returns: ``{data, error: {code, message, details}, meta}``."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable error code")
    message: str = Field(description="What went wrong, for people")
    details: Any = Field(default=None, description="Field locations or other structured context")


class Meta(BaseModel):
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= to get the next page; null at the end")
    limit: int | None = None


class Envelope(BaseModel, Generic[T]):
    data: T | None = None
    error: ErrorBody | None = None
    meta: Meta = Field(default_factory=Meta)


def ok(data: T, *, next_cursor: str | None = None, limit: int | None = None) -> Envelope[T]:
    return Envelope[T](data=data, meta=Meta(next_cursor=next_cursor, limit=limit))


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"data": None, "error": {"code": code, "message": message, "details": details}, "meta": Meta().model_dump()}
