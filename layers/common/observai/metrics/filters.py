"""Conditions on a metric series' attributes: the query API's filters and the ``match[attr]=value`` parameters of
the catalogue and trace searches, as SQL over ``s.attributes``.

Apart from observai.metrics.query, so that the functions that only filter by attributes (traces) do not import the
query engine; nor its request models: a ``match[...]`` parameter becomes a ``MatchFilter``, checked by
``match_pairs`` where it entered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from psycopg.types.json import Jsonb

from observai.match_params import match_pairs


class AttributeFilter(Protocol):
    """What ``filter_sql`` reads of a filter: the query API's ``QueryFilter``, or a ``MatchFilter``."""

    @property
    def attribute(self) -> str: ...
    @property
    def op(self) -> str: ...
    @property
    def value(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class MatchFilter:
    """A ``match[attr]=value`` parameter: ``attr`` in the text or its JSON number or boolean."""

    attribute: str
    value: list[Any]
    op: str = "in"


def anchored(pattern: str) -> str:
    """Regex filters match the whole value, as in Prometheus: ``a.*`` does not match ``ba``."""
    return f"^(?:{pattern})$"


def filter_sql(filters: Sequence[AttributeFilter], params: dict[str, Any], prefix: str = "f") -> str:
    """``and ...`` conditions on ``s.attributes`` for the filters; values go into ``params``."""
    parts: list[str] = []
    for i, f in enumerate(filters):
        key = f"{prefix}{i}"
        if f.op in ("=", "!="):
            params[key] = Jsonb({f.attribute: f.value})
            parts.append(("not " if f.op == "!=" else "") + f"s.attributes @> %({key})s::jsonb")
        elif f.op in ("in", "not_in"):
            values = f.value if isinstance(f.value, list) else [f.value]
            params[key] = [Jsonb({f.attribute: v}) for v in values]
            parts.append(("not " if f.op == "not_in" else "") + f"s.attributes @> any(%({key})s::jsonb[])")
        else:
            params[f"{key}k"] = f.attribute
            params[key] = anchored(str(f.value))
            operator = "~" if f.op == "=~" else "!~"
            parts.append(f"coalesce(s.attributes ->> %({key}k)s, '') {operator} %({key})s")
    return "".join(f" and {part}" for part in parts)


def match_filters(query_params: Mapping[str, str] | None) -> list[MatchFilter]:
    """``match[attr]=value`` query parameters as equality filters. A URL carries text only, so ``200``, ``true``
    also match the JSON number or boolean (``attributes @> {"attr": "200"}`` or ``{"attr": 200}``)."""
    filters: list[MatchFilter] = []
    for key, raw_value in match_pairs(query_params):
        values: list[Any] = [raw_value]
        try:
            parsed = json.loads(raw_value)
        except ValueError:
            parsed = None
        if isinstance(parsed, bool | int | float) and not (isinstance(parsed, float) and not math.isfinite(parsed)):
            values.append(parsed)
        filters.append(MatchFilter(attribute=key, value=values))
    return filters
