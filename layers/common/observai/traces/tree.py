"""Spans of one trace arranged as a tree: pure Python, no database.

Ingestion keeps whatever arrives, so a trace may be incomplete or inconsistent: a span whose parent is
missing (not sent, sampled out, still in flight) becomes a root flagged ``orphan``; a span claiming to
be its own ancestor (a cycle: corrupt or forged ids) is cut at the point where the cycle closes and
becomes an orphan root too, so every span appears exactly once and the walk always ends. Two spans
with the same span id (a retried export with another start time) are both kept; children attach to
the first one. Siblings are ordered by start time, then span id: the order a waterfall view draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Node:
    span: Mapping[str, Any]  # a row: span_id, parent_span_id, start_time, ... as read
    depth: int = 0
    orphan: bool = False  # has a parent id, but that parent is not in the trace (or closes a cycle)
    children: list[Node] = field(default_factory=list)


def _order(row: Mapping[str, Any]) -> tuple[Any, str]:
    return (row["start_time"], row["span_id"])


def build_tree(spans: Sequence[Mapping[str, Any]]) -> list[Node]:
    """The roots (true roots and orphans), each with its descendants; depth set on every node."""
    ordered = sorted(spans, key=_order)
    nodes = [Node(row) for row in ordered]
    first_by_id: dict[str, Node] = {}
    for node in nodes:
        first_by_id.setdefault(node.span["span_id"], node)

    # parent_of: the node each node hangs under, None for a root. A span naming itself as parent is a
    # one-span cycle; longer cycles are found by walking up below.
    parent_of: dict[int, Node | None] = {}
    for node in nodes:
        parent_id = node.span.get("parent_span_id")
        parent = first_by_id.get(parent_id) if parent_id else None
        if parent_id and (parent is None or parent is node):
            node.orphan = True
            parent = None
        parent_of[id(node)] = parent

    # Cycles: walk up from each node; meeting a node of the current walk closes a cycle, which is broken
    # by making the node where the walk re-entered it a root. Each node is settled once (linear time).
    settled: set[int] = set()
    for start in nodes:
        on_path: set[int] = set()
        walker: Node | None = start
        while walker is not None and id(walker) not in settled:
            if id(walker) in on_path:
                walker.orphan = True
                parent_of[id(walker)] = None
                break
            on_path.add(id(walker))
            walker = parent_of[id(walker)]
        settled.update(on_path)

    roots: list[Node] = []
    for node in nodes:  # in start order, so children lists come out sorted
        parent = parent_of[id(node)]
        if parent is None:
            roots.append(node)
        else:
            parent.children.append(node)

    stack = [(root, 0) for root in roots]
    while stack:  # iterative: a deep trace must not hit the recursion limit
        node, depth = stack.pop()
        node.depth = depth
        stack.extend((child, depth + 1) for child in node.children)
    return roots


def flatten(roots: Sequence[Node]) -> list[Node]:
    """Depth-first, children in order: the rows of a waterfall view."""
    out: list[Node] = []
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.children))
    return out
