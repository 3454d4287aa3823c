"""Match a request (method, path) to a template route, most specific first, as API Gateway HTTP APIs do.

A literal segment beats ``{param}``, which beats a greedy ``{proxy+}``; a route for the request's
method beats ``ANY``; the ``$default`` route catches whatever nothing else matched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from observai_local.template import Route

_PARAM = re.compile(r"^\{([A-Za-z0-9_.-]+)(\+?)\}$")


@dataclass(frozen=True)
class Match:
    route: Route
    path_parameters: dict[str, str]


@dataclass(frozen=True)
class _Compiled:
    route: Route
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    rank: tuple[tuple[int, ...], int]  # per segment 0 literal, 1 {param}, 2 {greedy+}; then 1 if ANY


def _compile(route: Route) -> _Compiled:
    parts, names, kinds = [], [], []
    for segment in route.path.strip("/").split("/") if route.path.strip("/") else []:
        param = _PARAM.match(segment)
        if param is None:
            parts.append(re.escape(segment))
            kinds.append(0)
        else:
            names.append(param.group(1))
            greedy = bool(param.group(2))
            parts.append(f"(?P<p{len(names) - 1}>{'.+' if greedy else '[^/]+'})")
            kinds.append(2 if greedy else 1)
    pattern = re.compile("^/" + "/".join(parts) + "$")
    return _Compiled(route, pattern, tuple(names), (tuple(kinds), 1 if route.method == "ANY" else 0))


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        routes = list(routes)
        self._default = next((r for r in routes if r.path == "$default"), None)
        compiled = [_compile(r) for r in routes if r.path != "$default"]
        self._routes = sorted(compiled, key=lambda c: c.rank)

    def match(self, method: str, path: str) -> Match | None:
        """The best route for ``path`` (the raw, still percent-encoded path); None when nothing matches."""
        method = method.upper()
        for candidate in self._routes:  # sorted most specific first
            found = candidate.pattern.match(path) if candidate.route.method in (method, "ANY") else None
            if found:
                params = {name: unquote(found.group(f"p{i}")) for i, name in enumerate(candidate.names)}
                return Match(candidate.route, params)
        return Match(self._default, {}) if self._default else None

    def paths(self) -> set[str]:
        return {c.route.path for c in self._routes}
