"""Span tree building (observai.traces.tree): nesting, sibling order, orphans, cycles, duplicates, depth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from observai.traces.tree import build_tree, flatten

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def span(span_id: str, parent: str | None, offset_ms: int) -> dict[str, Any]:
    return {"span_id": span_id, "parent_span_id": parent, "start_time": T0 + timedelta(milliseconds=offset_ms)}


def shape(spans: list[dict[str, Any]]) -> list[tuple[str, int, bool]]:
    return [(n.span["span_id"], n.depth, n.orphan) for n in flatten(build_tree(spans))]


def test_children_follow_their_parent_in_start_order_at_any_depth() -> None:
    # Given a root with two children (given out of order) and a grandchild
    spans = [
        span("c2", "root", 50),
        span("gc", "c1", 20),
        span("root", None, 0),
        span("c1", "root", 10),
    ]
    # When the tree is built and flattened
    roots = build_tree(spans)
    # Then there is one root, children come after their parent by start time, depths count the nesting
    assert [r.span["span_id"] for r in roots] == ["root"]
    assert shape(spans) == [("root", 0, False), ("c1", 1, False), ("gc", 2, False), ("c2", 1, False)]
    assert [len(n.children) for n in flatten(roots)] == [2, 1, 0, 0]


def test_siblings_starting_together_are_ordered_by_span_id() -> None:
    spans = [span("b", "root", 5), span("a", "root", 5), span("root", None, 0)]
    assert [s for s, _, _ in shape(spans)] == ["root", "a", "b"]


def test_a_span_whose_parent_is_missing_is_a_flagged_root_with_its_subtree() -> None:
    # Given a root, and a span under a parent that never arrived, with a child of its own
    spans = [span("root", None, 0), span("lost", "ffffffffffffffff", 30), span("kid", "lost", 35)]
    # Then the lost span is a root flagged orphan (after the true root: roots in start order); its child stays under it
    assert shape(spans) == [("root", 0, False), ("lost", 0, True), ("kid", 1, False)]


def test_a_span_that_is_its_own_parent_is_an_orphan_root() -> None:
    assert shape([span("self", "self", 0)]) == [("self", 0, True)]


def test_a_cycle_is_cut_once_and_every_span_appears_exactly_once() -> None:
    # Given a → c → b → a (each naming the next as parent), plus a real root with a child
    spans = [
        span("a", "b", 0),
        span("b", "c", 10),
        span("c", "a", 20),
        span("root", None, 5),
        span("child", "root", 6),
    ]
    # When the tree is built
    nodes = flatten(build_tree(spans))
    # Then the walk ends, each span is there once, exactly one span of the cycle became an orphan root
    assert sorted(n.span["span_id"] for n in nodes) == ["a", "b", "c", "child", "root"]
    cycle = [n for n in nodes if n.span["span_id"] in ("a", "b", "c")]
    assert [n.orphan for n in cycle].count(True) == 1
    assert sorted(n.depth for n in cycle) == [0, 1, 2]
    assert ("root", 0, False) in shape(spans) and ("child", 1, False) in shape(spans)


def test_duplicate_span_ids_are_both_kept_and_children_attach_to_the_first() -> None:
    spans = [span("p", None, 0), span("p", None, 1), span("k", "p", 2)]
    assert shape(spans) == [("p", 0, False), ("k", 1, False), ("p", 0, False)]


def test_a_very_deep_chain_builds_without_recursion() -> None:
    # Given a chain 20,000 spans deep (no recursion limit may be hit)
    spans = [span("s0", None, 0)] + [span(f"s{i}", f"s{i - 1}", i) for i in range(1, 20_000)]
    nodes = flatten(build_tree(spans))
    assert len(nodes) == 20_000 and nodes[-1].depth == 19_999


def test_no_spans_no_roots() -> None:
    assert build_tree([]) == []
