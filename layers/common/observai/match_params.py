"""``match[<name>]=<value>`` query parameters, as list routes take them (series attributes, alert labels): the
pairs, checked once here (name 1-256 characters, value up to 1024, at most 20 of them)."""

from __future__ import annotations

from collections.abc import Mapping

from observai.errors import InvalidInput

MAX_MATCH_PARAMS = 20


def match_pairs(query_params: Mapping[str, str] | None, *, what: str = "attribute") -> list[tuple[str, str]]:
    """The (name, value) pairs of the ``match[...]`` parameters, sorted by name; other parameters are ignored."""
    pairs: list[tuple[str, str]] = []
    for raw_key, value in sorted((query_params or {}).items()):
        if not (raw_key.startswith("match[") and raw_key.endswith("]")):
            continue
        key = raw_key[len("match[") : -1]
        if not key or len(key) > 256 or len(value) > 1024:
            raise InvalidInput(
                f"match[<{what}>]=<value>: {what} 1-256, value up to 1024 characters",
                details={"loc": ["query", raw_key]},
            )
        pairs.append((key, value))
    if len(pairs) > MAX_MATCH_PARAMS:
        raise InvalidInput(f"At most {MAX_MATCH_PARAMS} match[...] parameters", details={"loc": ["query"]})
    return pairs
