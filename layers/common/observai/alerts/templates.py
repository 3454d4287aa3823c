"""Annotation templates (summary, description, runbook URL...), rendered with an alert's value and labels.

Jinja2's sandbox, restricted further: a template is checked when the rule is saved (a 422 naming the annotation)
and may hold text, ``{{ expressions }}`` with the filters below, and ``{% if %}``. Loops, macros, includes,
assignments and blocks are refused, so rendering cannot run long; ``*`` and ``**`` are bounded; attribute access
goes through the sandbox (no ``__class__``...); the output is cut at MAX_OUTPUT characters. User text is never
formatted with ``str.format`` or ``%`` and never evaluated. Variables:

* ``value``: the value that crossed the threshold (a number, or null for an absence);
* ``labels``: the alert's labels (``labels.service``, ``labels["http.route"]``);
* ``threshold``: the rule's threshold when it has one; ``rule``: the rule's name.

Rendering happens at every evaluation; an error there (a filter given text, a division by zero) renders as
``<template error: ...>`` in that annotation and never stops the evaluation.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

MAX_TEMPLATE = 4000
MAX_OUTPUT = 4000
MAX_REPEAT = 1000  # "x" * n, [..] * n
MAX_EXPONENT = 64

_ALLOWED_NODES = frozenset(
    {
        "Template",
        "Output",
        "TemplateData",
        "If",
        "Name",
        "Const",
        "Getattr",
        "Getitem",
        "Slice",
        "Filter",
        "Test",
        "CondExpr",
        "And",
        "Or",
        "Not",
        "Neg",
        "Pos",
        "Compare",
        "Operand",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "FloorDiv",
        "Mod",
        "Pow",
        "Concat",
        "Tuple",
        "List",
        "Dict",
        "Pair",
        "Keyword",
        "Call",
    }
)
# Filters a template may use: the sandbox's safe builtins that cannot loop long, and ours.
_ALLOWED_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "default",
        "d",
        "escape",
        "e",
        "first",
        "float",
        "format_number",
        "humanize",
        "humanize_duration",
        "humanize_percentage",
        "int",
        "join",
        "last",
        "length",
        "lower",
        "replace",
        "round",
        "string",
        "title",
        "trim",
        "truncate",
        "upper",
        "urlencode",
    }
)


class TemplateError(ValueError):
    """A template that cannot be saved: the message says why (and where, as ``line N``)."""


def humanize(value: Any) -> str:
    """1234567 → 1.235M (SI prefixes), as Prometheus' humanize."""
    number = float(value)
    if number == 0 or not math.isfinite(number):
        return f"{number:g}"
    for prefix, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= size:
            return f"{number / size:.4g}{prefix}"
    for prefix, size in (("m", 1e-3), ("µ", 1e-6), ("n", 1e-9)):
        if abs(number) < 1 and abs(number) >= size:
            return f"{number / size:.4g}{prefix}"
    return f"{number:.4g}"


def humanize_percentage(value: Any) -> str:
    """0.1234 → 12.34%."""
    return f"{float(value) * 100:.4g}%"


def humanize_duration(value: Any) -> str:
    """90061 seconds → 1d 1h 1m 1s; under a second in ms."""
    seconds = float(value)
    if not math.isfinite(seconds):
        return f"{seconds:g}"
    if abs(seconds) < 1:
        return f"{seconds * 1000:.4g}ms"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{int(count)}{unit}")
    if seconds or not parts:
        parts.append(f"{seconds:.4g}s")
    return sign + " ".join(parts)


def format_number(value: Any, digits: int = 2) -> str:
    return f"{float(value):.{max(0, min(int(digits), 12))}f}"


@functools.cache
def _environment() -> SandboxedEnvironment:
    from jinja2.sandbox import SandboxedEnvironment

    class _Bounded(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
            if operator_name == "*":
                for sized, count in ((left, right), (right, left)):
                    if isinstance(sized, str | list | tuple) and isinstance(count, int) and count > MAX_REPEAT:
                        raise TemplateError(f"repeating text or a list more than {MAX_REPEAT} times")
                return operator.mul(left, right)
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise TemplateError(f"exponents are at most {MAX_EXPONENT}")
            return operator.pow(left, right)

    env = _Bounded(autoescape=False, keep_trailing_newline=False)
    env.filters["humanize"] = humanize
    env.filters["humanize_percentage"] = humanize_percentage
    env.filters["humanize_duration"] = humanize_duration
    env.filters["format_number"] = format_number
    env.globals = {}  # nothing to call but the variables' own methods, which the sandbox guards
    return env


def check(source: str) -> None:
    """Raise TemplateError unless ``source`` is a template we render: parses, and uses only the allowed syntax."""
    if len(source) > MAX_TEMPLATE:
        raise TemplateError(f"a template is at most {MAX_TEMPLATE} characters")
    from jinja2 import TemplateSyntaxError, nodes

    env = _environment()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from None
    for node in tree.find_all(nodes.Node):
        name = type(node).__name__
        if name not in _ALLOWED_NODES:
            statement = name.lower()
            raise TemplateError(
                f"line {node.lineno}: {statement!r} is not allowed in alert templates (text, {{{{ expressions }}}},"
                " filters and {% if %} only)"
            )
        if isinstance(node, nodes.Filter) and node.name not in _ALLOWED_FILTERS:
            raise TemplateError(f"line {node.lineno}: unknown filter {node.name!r}")
        if isinstance(node, nodes.Call) and not isinstance(node.node, nodes.Getattr):
            raise TemplateError(f"line {node.lineno}: only methods of values may be called (e.g. labels.get('x'))")
    try:
        env.from_string(source)
    except TemplateSyntaxError as exc:  # e.g. an unknown test
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from None


@functools.lru_cache(maxsize=2048)
def _compiled(source: str) -> Any:
    """Checked and compiled once per text: rules render the same templates at every evaluation."""
    check(source)
    return _environment().from_string(source)


def render(source: str, *, value: float | None, labels: Mapping[str, str], **extra: Any) -> str:
    """The template rendered for one alert; an error renders as ``<template error: ...>``, never raises."""
    if "{" not in source:
        return source[:MAX_OUTPUT]
    from jinja2.exceptions import TemplateError as JinjaError

    try:
        output = _compiled(source).render(value=value, labels=dict(labels), **extra)
    except (JinjaError, TemplateError, ArithmeticError, TypeError, ValueError) as exc:
        return f"<template error: {str(exc)[:200]}>"
    return output[:MAX_OUTPUT]


def render_all(
    templates: Mapping[str, str], *, value: float | None, labels: Mapping[str, str], **extra: Any
) -> dict[str, str]:
    return {key: render(source, value=value, labels=labels, **extra) for key, source in templates.items()}
