"""The notification policy at work: the tree with inherited settings resolved, which routes an alert takes,
its group, whether a route is muted now, inhibition; and the checks over the whole document.

Alertmanager's semantics: an alert enters at the root and descends into the first child route whose matchers
all match (depth first); a route with ``continue`` lets the search go on to its next siblings; a route none of
whose children match takes the alert itself. Children inherit the parent's receivers, group_by and timers when
they leave them unset. Mute and active time intervals are a route's own (not inherited), as in Alertmanager.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from observai.alerts.matchers import Matcher, all_match
from observai.alerts.policy_models import ALL_LABELS, MAX_DEPTH, MAX_ROUTES, InhibitRule, PolicyDocument, Route
from observai.alerts.time_intervals import NamedTimeInterval

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ResolvedRoute:
    """A route with every inherited setting filled in; ``id`` is its name, or its path in the tree ("0.2.1")."""

    id: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    group_wait_s: int
    group_interval_s: int
    repeat_interval_s: int
    receivers: dict[str, Any]
    continue_: bool
    mute_time_intervals: tuple[str, ...]
    active_time_intervals: tuple[str, ...]
    children: tuple[ResolvedRoute, ...] = field(default=())

    @property
    def groups_by_all(self) -> bool:
        return self.group_by == (ALL_LABELS,)

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The alert's values of the route's group_by labels (an absent label is "", as in Alertmanager)."""
        if self.groups_by_all:
            return dict(labels)
        return {name: labels.get(name, "") for name in self.group_by}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """One notification group per route and group label values."""
        canonical = json.dumps([self.id, sorted(self.group_labels(labels).items())], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:40]


def _resolve(route: Route, parent: ResolvedRoute | None, path: str) -> ResolvedRoute:
    receivers = route.receivers.model_dump() if route.receivers is not None else None
    node = ResolvedRoute(
        id=route.name or path,
        matchers=tuple(route.matchers),
        group_by=tuple(route.group_by) if route.group_by is not None else parent.group_by if parent else ("alertname",),
        group_wait_s=_pick(route.group_wait, parent.group_wait_s if parent else 30),
        group_interval_s=_pick(route.group_interval, parent.group_interval_s if parent else 300),
        repeat_interval_s=_pick(route.repeat_interval, parent.repeat_interval_s if parent else 4 * 3600),
        receivers=receivers
        if receivers is not None
        else dict(parent.receivers)
        if parent
        else {"contact_points": [], "escalation_policy": None},
        continue_=route.continue_,
        mute_time_intervals=tuple(route.mute_time_intervals),
        active_time_intervals=tuple(route.active_time_intervals),
    )
    children = tuple(_resolve(child, node, f"{path}.{i}") for i, child in enumerate(route.routes))
    return ResolvedRoute(**{**node.__dict__, "children": children})


def _pick(value: int | None, inherited: int) -> int:
    return inherited if value is None else value


@dataclass(frozen=True)
class Policy:
    """A project's policy, ready to route with."""

    document: PolicyDocument
    root: ResolvedRoute
    by_id: dict[str, ResolvedRoute]
    intervals: dict[str, NamedTimeInterval]

    @classmethod
    def of(cls, document: PolicyDocument) -> Policy:
        root = _resolve(document.route, None, "0")
        by_id: dict[str, ResolvedRoute] = {}
        stack = [root]
        while stack:
            node = stack.pop()
            by_id[node.id] = node
            stack.extend(node.children)
        return cls(document, root, by_id, {t.name: t for t in document.mute_time_intervals})

    def routes_for(self, labels: Mapping[str, str]) -> list[ResolvedRoute]:
        """The routes an alert with ``labels`` is notified through (at least the root)."""
        return _match(self.root, labels) or [self.root]

    def route(self, route_id: str) -> ResolvedRoute:
        """A group's route; a route gone from the policy since the group formed falls back to the root."""
        return self.by_id.get(route_id, self.root)

    def muted_by_time(self, route: ResolvedRoute, now: datetime) -> str | None:
        """Why the route sends nothing now (a mute interval holds, or none of its active intervals does), or None."""
        for name in route.mute_time_intervals:
            interval = self.intervals.get(name)
            if interval is not None and interval.contains(now):
                return f"mute_time_interval:{name}"
        if route.active_time_intervals and not any(
            self.intervals[name].contains(now) for name in route.active_time_intervals if name in self.intervals
        ):
            return "outside_active_time_intervals"
        return None


def _match(node: ResolvedRoute, labels: Mapping[str, str]) -> list[ResolvedRoute]:
    if not all_match(node.matchers, labels):
        return []
    found: list[ResolvedRoute] = []
    for child in node.children:
        matched = _match(child, labels)
        if matched:
            found.extend(matched)
            if not child.continue_:
                break
    return found or [node]


class Inhibitor:
    """The inhibition rules over a project's firing alerts (id, labels), indexed once per flush: each rule's sources
    by their values of its ``equal`` labels, so judging an alert is a look-up, not a scan of every firing alert.

    As Alertmanager: the equal labels compare as text, absent being "" on both sides; an alert never inhibits
    itself; and when the target also matches the source matchers, sources that also match the target matchers are
    ignored (two alerts matching both sides must not mute each other)."""

    def __init__(self, rules: Sequence[InhibitRule], firing: Iterable[tuple[Any, Mapping[str, str]]]) -> None:
        alerts = list(firing)
        self._rules: list[tuple[InhibitRule, dict[tuple[str, ...], list[tuple[Any, bool]]]]] = []
        for rule in rules:
            by_equal: dict[tuple[str, ...], list[tuple[Any, bool]]] = {}
            for source_id, source in alerts:
                if all_match(rule.source_matchers, source):
                    key = tuple(source.get(name, "") for name in rule.equal)
                    by_equal.setdefault(key, []).append((source_id, all_match(rule.target_matchers, source)))
            if by_equal:
                self._rules.append((rule, by_equal))

    def inhibits(self, target: Mapping[str, str], target_id: Any) -> bool:
        for rule, by_equal in self._rules:
            if not all_match(rule.target_matchers, target):
                continue
            two_sided = all_match(rule.source_matchers, target)
            sources = by_equal.get(tuple(target.get(name, "") for name in rule.equal), ())
            for source_id, source_is_target_too in sources:
                if source_id == target_id or (two_sided and source_is_target_too):
                    continue
                return True
        return False


def inhibited_by(
    rules: Sequence[InhibitRule],
    target: Mapping[str, str],
    target_id: Any,
    firing: Iterable[tuple[Any, Mapping[str, str]]],
) -> bool:
    """Whether an alert (``target`` labels, ``target_id``) is inhibited by one of the ``firing`` alerts (id, labels)."""
    return Inhibitor(rules, firing).inhibits(target, target_id)


def check_document(document: PolicyDocument) -> list[dict[str, Any]]:
    """The problems of the document as a whole, each ``{"loc", "type", "message"}`` as a 422 reports fields."""
    problems: list[dict[str, Any]] = []

    def problem(loc: Loc, kind: str, message: str) -> None:
        problems.append({"loc": ["body", *(str(p) for p in loc)], "type": kind, "message": message})

    names = [interval.name for interval in document.mute_time_intervals]
    for index, name in enumerate(names):
        if name in names[:index]:
            problem(("mute_time_intervals", index, "name"), "duplicate", f"the time interval {name!r} is defined twice")
    known = set(names)
    root = document.route
    if root.matchers:
        problem(("route", "matchers"), "root_route", "the root route matches every alert: it takes no matchers")
    if root.continue_:
        problem(("route", "continue"), "root_route", "the root route has no siblings to continue to")
    if root.mute_time_intervals or root.active_time_intervals:
        field_name = "mute_time_intervals" if root.mute_time_intervals else "active_time_intervals"
        problem(("route", field_name), "root_route", "the root route cannot be muted; mute a child route")

    count = 0
    route_names: set[str] = set()

    def walk(route: Route, loc: Loc, depth: int) -> None:
        nonlocal count
        count += 1
        if count == MAX_ROUTES + 1:
            problem(loc, "too_many_routes", f"a policy has at most {MAX_ROUTES} routes")
        if depth > MAX_DEPTH:
            problem(loc, "too_deep", f"routes nest at most {MAX_DEPTH} levels deep")
            return
        if route.name is not None:
            if route.name in route_names:
                problem((*loc, "name"), "duplicate", f"two routes are named {route.name!r}")
            route_names.add(route.name)
        for field_name in ("mute_time_intervals", "active_time_intervals"):
            for index, name in enumerate(getattr(route, field_name)):
                if name not in known:
                    problem(
                        (*loc, field_name, index),
                        "unknown_time_interval",
                        f"no time interval is named {name!r} (define it under mute_time_intervals)",
                    )
        for index, child in enumerate(route.routes):
            walk(child, (*loc, "routes", index), depth + 1)

    walk(root, ("route",), 1)
    return problems
