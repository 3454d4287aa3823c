"""PATCH bodies, one rule everywhere: a field left out keeps its value; an explicit null is refused where the field
cannot be empty (the 422 names the field); a body with no field at all is a 422 rather than a silent no-op.

A model says it in two lines: ``_not_null = refuse_null("name", "steps")`` and ``_something = require_a_field()``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator, model_validator


def refuse_null(*fields: str) -> Any:
    """A field validator refusing an explicit null for ``fields`` (it runs only for fields the caller sent)."""

    def not_null(cls: type[BaseModel], value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value

    return field_validator(*fields)(not_null)


def require_a_field() -> Any:
    """A model validator refusing a body that sets none of the model's fields."""

    def something(self: BaseModel) -> BaseModel:
        if not self.model_fields_set:
            raise ValueError(f"give at least one of {', '.join(type(self).model_fields)}")
        return self

    return model_validator(mode="after")(something)
