"""The API routes' one validation layer for what no pydantic model sees: the JSON document itself and the raw
query and path parameters, checked before Powertools parses anything.

- The body must be UTF-8 (400 ``invalid_utf8``, never U+FFFD in place of a byte) and JSON that orjson accepts:
  no NaN/Infinity literals, no number that overflows to infinity, no lone surrogate escape (400
  ``malformed_json``, with orjson's position).
- It nests at most ``MAX_DEPTH`` levels (400 ``too_deep``): no route takes more, and a deeper document would
  reach the recursion limits of the parsers and validators behind us.
- Strings (keys included) and parameters hold no NUL and no lone surrogate, and integers fit a bigint: Postgres
  could store neither (422 ``validation_error`` with the field's location, as pydantic reports the rest).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from observai.errors import InvalidInput, Unprocessable
from observai.text import unstorable_reason

MAX_DEPTH = 32
_BIGINT = (-(2**63), 2**63 - 1)


def check_json_body(text: str) -> None:
    """Refuse a body Postgres or our parsers could not take; see the module's docstring."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth" in exc.msg:
            raise _too_deep() from None
        raise InvalidInput(
            f"The request body is not valid JSON: {exc.msg}", code="malformed_json", details={"position": exc.pos}
        ) from None
    problems, huge_number = _problems(document)
    if huge_number:
        # A number past 2^63: a float literal (fine) or an integer literal past bigint (not): the exact parse
        # tells them apart (safe: the depth is bounded by now).
        problems, _ = _problems(json.loads(text, parse_int=_exact_int))
    if problems:
        raise Unprocessable("The request is invalid", code="validation_error", details=problems)


def check_parameters(event: Mapping[str, Any]) -> None:
    """Query and path parameters: no NUL, no lone surrogate (API Gateway decodes %00 into a NUL)."""
    problems = []
    for where, params in (("query", event.get("queryStringParameters")), ("path", event.get("pathParameters"))):
        for name, value in (params or {}).items():
            reason = unstorable_reason(str(name)) or unstorable_reason(str(value))
            if reason:
                problems.append(_detail([where, name], "string_unstorable", reason))
    if problems:
        raise Unprocessable("The request is invalid", code="validation_error", details=problems)


def _problems(document: Any) -> tuple[list[dict[str, Any]], bool]:
    """Every unstorable string or out-of-range integer, with its location, and whether a number of 2^63 or more
    was read as a float (orjson's reading of an integer literal past 64 bits); iterative (depth is bounded here)."""
    problems: list[dict[str, Any]] = []
    huge_number = False
    stack: list[tuple[Any, list[str]]] = [(document, ["body"])]
    while stack and len(problems) < 20:
        node, loc = stack.pop()
        if len(loc) > MAX_DEPTH + 1:
            raise _too_deep()
        if isinstance(node, dict):
            for key, value in node.items():
                reason = unstorable_reason(key)
                if reason:
                    problems.append(_detail([*loc, key], "string_unstorable", f"key {reason}"))
                stack.append((value, [*loc, key]))
        elif isinstance(node, list):
            stack.extend((value, [*loc, str(i)]) for i, value in enumerate(node))
        elif isinstance(node, str):
            reason = unstorable_reason(node)
            if reason:
                problems.append(_detail(loc, "string_unstorable", reason))
        elif (
            isinstance(node, int) and not isinstance(node, bool) and not _BIGINT[0] <= node <= _BIGINT[1]
        ) or isinstance(node, _OutOfRange):
            problems.append(_detail(loc, "int_out_of_range", f"must be between {_BIGINT[0]} and {_BIGINT[1]}"))
        elif isinstance(node, float) and abs(node) >= 2**63:
            huge_number = True
    return sorted(problems, key=lambda d: d["loc"]), huge_number


class _OutOfRange:
    """An integer literal past bigint, as the exact parse sees it (orjson reads one past 64 bits as a float)."""


def _exact_int(literal: str) -> int | _OutOfRange:
    value = int(literal)
    return value if _BIGINT[0] <= value <= _BIGINT[1] else _OutOfRange()


def _detail(loc: list[str], kind: str, message: str) -> dict[str, Any]:
    return {"loc": [_printable(part) for part in loc], "type": kind, "message": message}


def _printable(part: Any) -> str:
    """A location part safe to echo back (and to store in logs): NUL and lone surrogates made visible."""
    text = str(part)
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


def _too_deep() -> InvalidInput:
    return InvalidInput(
        f"The request body nests deeper than {MAX_DEPTH} levels", code="too_deep", details={"max_depth": MAX_DEPTH}
    )
